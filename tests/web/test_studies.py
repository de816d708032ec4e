"""Uploads (limits, garbage, de-identification), study metadata, window/level rendering, isolation."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, text


def _png_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_png_upload_and_metadata(alice, web):
    r = web.upload(alice, [("scan of Jane Doe.png", web.png_bytes())])
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["n_images"] == 1 and study["source_kind"] == "raster"
    assert study["images"][0]["rows"] == 64 and study["images"][0]["url"].endswith("/images/0.png")
    assert "Jane" not in r.text  # the client's file name is never kept
    again = alice.get(f"/api/studies/{study['id']}").json()
    assert again["id"] == study["id"] and again["n_images"] == 1
    assert [s["id"] for s in alice.get("/api/studies").json()] == [study["id"]]
    img = _png_of(alice.get(f"/api/studies/{study['id']}/images/0.png"))
    assert img.shape == (64, 64)


def test_dicom_upload_is_deidentified(alice, web, ct_small, app, zebra_env):
    import pydicom

    original = pydicom.dcmread(ct_small)
    secrets_ = [str(original.PatientName), str(original.PatientID), str(original.StudyInstanceUID)]
    r = web.upload(alice, [("CT_small.dcm", ct_small.read_bytes())])
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["modality"] == "CT" and study["deid"]["profile"]
    assert "PatientName" in study["deid"]["removed"] + study["deid"]["emptied"] + study["deid"]["replaced"]
    detail = alice.get(f"/api/studies/{study['id']}").text
    for value in secrets_:
        assert value not in r.text and value not in detail
    # Nothing in the database either: dump every text column of every table.
    with app.state.zebra.store.engine.connect() as conn:
        tables = [row[0] for row in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        dump = json.dumps(
            [list(map(str, row)) for t in tables for row in conn.execute(text(f'SELECT * FROM "{t}"'))]
        )
    for value in secrets_:
        assert value not in dump
    assert "CompressedSamples" not in dump and "CT_small" not in dump


def test_window_level_changes_png(alice, web, ct_small):
    study = web.upload(alice, [("a.dcm", ct_small.read_bytes())]).json()
    base = f"/api/studies/{study['id']}/images/0.png"
    default = _png_of(alice.get(base))
    soft = _png_of(alice.get(base, params={"wc": 40, "ww": 400}))
    bone = _png_of(alice.get(base, params={"wc": 500, "ww": 2000}))
    assert default.shape == soft.shape == bone.shape == (128, 128)
    assert not np.array_equal(soft, bone) and not np.array_equal(default, soft)
    # A narrow soft-tissue window saturates more pixels than a wide bone window.
    assert ((soft == 0) | (soft == 255)).mean() > ((bone == 0) | (bone == 255)).mean()
    # The same window twice gives the same image (rendered from the stored modality units).
    assert np.array_equal(soft, _png_of(alice.get(base, params={"wc": 40, "ww": 400})))
    for bad in ({"wc": 40, "ww": 0}, {"wc": "nan", "ww": 400}, {"wc": 40, "ww": -5}, {"wc": "x", "ww": 1}):
        r = alice.get(base, params=bad)
        assert r.status_code in (400, 422) and r.json()["error"], bad
    assert alice.get(f"/api/studies/{study['id']}/images/1.png").status_code == 404


def test_multi_file_series_and_zip(alice, web, ct_small):
    data = ct_small.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("series/IM0001.dcm", data)
    r = web.upload(alice, [("series.zip", buf.getvalue())])
    assert r.status_code == 201, r.text
    assert r.json()["n_images"] == 1
    two = web.upload(alice, [("p1.png", web.png_bytes(seed=1)), ("p2.png", web.png_bytes(seed=2))])
    assert two.status_code in (201, 415, 422)  # two unrelated PNGs: intake decides; never a 500
    assert "error" in two.json() or two.json()["n_images"] >= 1


def test_upload_size_limit(make_app, users, web):
    app = make_app(server={"max_upload_bytes": 50_000})
    with web.sign_in(app, "bob") as c:
        big = web.png_bytes(size=400)
        assert len(big) > 50_000
        r = web.upload(c, [("big.png", big)])
        assert r.status_code == 413 and "limit" in r.json()["error"] and r.json()["hint"]
        # Streaming check without Content-Length: chunked body.
        boundary = "zzbound"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n\r\n'.encode()
            + big
            + f"\r\n--{boundary}--\r\n".encode()
        )

        def chunks():
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        r = c.post(
            "/api/studies",
            content=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 413
        assert web.upload(c, [("small.png", web.png_bytes())]).status_code == 201


def test_upload_count_limit(make_app, users, web):
    app = make_app(server={"max_upload_files": 2})
    with web.sign_in(app, "bob") as c:
        files = [(f"f{i}.png", web.png_bytes(seed=i)) for i in range(3)]
        r = web.upload(c, files)
        assert r.status_code == 413 and "Too many files" in r.json()["error"]


GARBAGE = [
    ("empty.dcm", b""),
    ("random.dcm", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))),
    ("text.png", b"hello, I am not a PNG"),
    ("trunc.png", None),
    ("preamble.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI" + b"\xff\xff" + b"garbage"),
    ("bad.zip", b"PK\x03\x04" + b"\0" * 40),
    ("fake.nii.gz", b"\x1f\x8b\x08\x00" + b"\0" * 30),
]


@pytest.mark.parametrize("name,data", GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_uploads_are_client_errors(alice, web, name, data):
    if data is None:
        data = web.png_bytes(size=128)[:200]
    r = web.upload(alice, [(name, data)])
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert body["error"] and "hint" in body
    assert alice.get("/api/me").status_code == 200  # the server is still fine


def test_malformed_requests(alice):
    r = alice.post("/api/studies", content=b"not multipart", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    r = alice.post(
        "/api/studies", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert 400 <= r.status_code < 500
    r = alice.post("/api/studies", data={"role": "current"}, files=[("other", ("", b""))])
    assert 400 <= r.status_code < 500 and r.json()["error"]
    r = alice.post("/api/studies", params={"role": "sideways"}, files=[("files", ("a.png", b"x"))])
    assert r.status_code == 400 and "role" in r.json()["error"]
    assert alice.get("/api/studies/notanumber").status_code == 422
    assert alice.get("/api/studies/notanumber").json()["error"].startswith("Invalid request")


def test_studies_are_private(alice, bob, web, ct_small):
    mine = web.upload(alice, [("a.dcm", ct_small.read_bytes())]).json()
    sid = mine["id"]
    for path in (
        f"/api/studies/{sid}",
        f"/api/studies/{sid}/images/0.png",
        f"/api/studies/{sid}/images/0.png?wc=40&ww=400",
        f"/api/studies/{sid}/images/0/overlays",
        f"/api/studies/{sid}/images/0/heatmap.png",
    ):
        r = bob.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]
    assert bob.get("/api/studies").json() == []
    # Same bytes uploaded by bob become bob's own copy, not a way into alice's.
    theirs = web.upload(bob, [("a.dcm", ct_small.read_bytes())]).json()
    assert theirs["id"] != sid
    assert bob.get(f"/api/studies/{theirs['id']}/images/0.png").status_code == 200
    assert alice.get(f"/api/studies/{theirs['id']}").status_code == 404
    # Bob cannot attach alice's study to a session, nor upload into alice's session.
    assert bob.post("/api/sessions", json={"study_id": sid}).status_code == 404
    alice_session = alice.post("/api/sessions", json={"study_id": sid}).json()["id"]
    r = web.upload(bob, [("b.png", web.png_bytes())], session_id=alice_session)
    assert r.status_code == 404


def test_upload_attaches_to_session_as_prior(alice, web):
    s = alice.post("/api/sessions", json={}).json()
    cur = web.upload(alice, [("c.png", web.png_bytes(seed=3))], session_id=s["id"], role="current").json()
    pri = web.upload(alice, [("p.png", web.png_bytes(seed=4))], session_id=s["id"], role="prior").json()
    got = alice.get(f"/api/sessions/{s['id']}").json()
    assert got["study_id"] == cur["id"] and got["prior_study_id"] == pri["id"] and cur["id"] != pri["id"]


def test_upload_audit_has_no_file_names(alice, web, app, caplog):
    import store

    with caplog.at_level("DEBUG"):
        r = web.upload(alice, [("Smith_John_1970.png", web.png_bytes())])
    assert r.status_code == 201
    assert "Smith" not in caplog.text
    with app.state.zebra.store.session() as s:
        events = s.scalars(select(store.AuditEvent).where(store.AuditEvent.action == "study.upload")).all()
    assert (
        len(events) == 1 and events[0].details["files"] == 1 and "Smith" not in json.dumps(events[0].details)
    )


def test_multiframe_slices_are_numbered(alice, web):
    pydicom_data = pytest.importorskip("pydicom.data")
    from pathlib import Path

    path = Path(pydicom_data.get_testdata_file("emri_small.dcm"))
    study = web.upload(alice, [("mr.dcm", path.read_bytes())]).json()
    assert study["n_images"] == 10 and [i["n"] for i in study["images"]] == list(range(10))
    first = _png_of(alice.get(f"/api/studies/{study['id']}/images/0.png"))
    last = _png_of(alice.get(f"/api/studies/{study['id']}/images/9.png"))
    assert first.shape == last.shape and not np.array_equal(first, last)
    assert alice.get(f"/api/studies/{study['id']}/images/10.png").status_code == 404
