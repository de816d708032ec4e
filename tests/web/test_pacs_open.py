"""Open from PACS (``POST /api/studies/pacs``, ``GET /api/pacs``) with a stubbed PACS: a study is fetched from
the operator's server only, then de-identified, limited, owned and stored like an upload; failures give clear
errors, and nothing about the server or the study's identity reaches a response or the log."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text

ACCESSION = "ZW4711"


def _part10(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class StubPacs:
    """A PACS holding ``studies`` (lists of pydicom data sets); records every search and fetch."""

    def __init__(self, studies: list[list[Any]]) -> None:
        self.studies = {s[0].StudyInstanceUID: s for s in studies}
        self.searches: list[dict[str, Any]] = []
        self.fetches: list[str] = []
        self.fail: Exception | None = None

    def search_studies(self, filters: dict[str, Any], *, limit: int | None = None) -> list[dict[str, Any]]:
        self.searches.append(dict(filters))
        if self.fail is not None:
            raise self.fail
        out = []
        for uid, study in self.studies.items():
            if filters.get("StudyInstanceUID", uid) == uid and filters.get(
                "AccessionNumber", study[0].AccessionNumber
            ) == str(study[0].AccessionNumber):
                out.append({"0020000D": {"vr": "UI", "Value": [uid]}})
        return out[:limit]

    def fetch_study(self, study_uid: str) -> list[bytes]:
        self.fetches.append(study_uid)
        return [_part10(ds) for ds in self.studies[study_uid]]

    @property
    def calls(self) -> int:
        return len(self.searches) + len(self.fetches)


@pytest.fixture
def pacs_study() -> list[Any]:
    from pacs.samples import sample_study

    return sample_study(ACCESSION, modality="CT", slices=3, patient_id="PID-SECRET-42")


@pytest.fixture
def stub(pacs_study: list[Any], monkeypatch: pytest.MonkeyPatch) -> StubPacs:
    from zebra_web import pacs_open

    pacs = StubPacs([pacs_study])
    monkeypatch.setattr(pacs_open, "make_client", lambda settings: pacs)
    return pacs


@pytest.fixture
def pacs_app(web_settings, scripted_agent) -> Callable[..., Any]:
    """Builds an app whose ``[dicomweb]`` is configured (keyword arguments update it; ``server=`` too)."""
    from zebra.config import DicomwebSettings
    from zebra_web import create_app

    def build(server: dict[str, Any] | None = None, **dicomweb: Any) -> Any:
        cfg = {"url": "http://127.0.0.1:9/dicom-web", "fetch_attempts": 1, "backoff_s": 0.0, **dicomweb}
        update: dict[str, Any] = {"dicomweb": DicomwebSettings(**cfg)}
        if server:
            update["server"] = web_settings.server.model_copy(update=server)
        return create_app(web_settings.model_copy(update=update), agent_factory=lambda: scripted_agent)

    return build


@pytest.fixture
def app(pacs_app):  # the web conftest's users/alice/bob fixtures sign in to this app
    return pacs_app()


def _open(c: Any, **body: Any):
    return c.post("/api/studies/pacs", json=body)


def _secrets(study: list[Any]) -> list[str]:
    ds = study[0]
    return [
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        str(ds.PatientID),
        ds.AccessionNumber,
    ]


def _db_dump(app: Any) -> str:
    with app.state.zebra.store.engine.connect() as conn:
        tables = [row[0] for row in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        return json.dumps(
            [list(map(str, row)) for t in tables for row in conn.execute(text(f'SELECT * FROM "{t}"'))]
        )


def _incoming_is_empty(app: Any) -> bool:
    return not any(app.state.zebra.upload_tmp.iterdir())


# ---------------------------------------------------------------------------------------------------- success
def test_status_tells_the_page_whether_a_pacs_is_configured(alice, make_app, users, web) -> None:
    assert alice.get("/api/pacs").json() == {"configured": True}
    with web.sign_in(make_app(), "bob") as plain:  # the default settings: no [dicomweb] url
        assert plain.get("/api/pacs").json() == {"configured": False}
    from fastapi.testclient import TestClient

    assert TestClient(alice.app).get("/api/pacs").status_code == 401


def test_open_by_accession_stores_a_deidentified_study_like_an_upload(
    alice, app, stub: StubPacs, pacs_study: list[Any]
) -> None:
    session = alice.post("/api/sessions", json={}).json()["id"]
    r = _open(alice, accession=f" {ACCESSION} ", session_id=session)
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["n_images"] == 3 and study["modality"] == "CT" and study["role"] == "current"
    assert study["session_id"] == session and study["deid"]["profile"]
    # Exactly one exact-match search on the configured server, then the fetch of the study it found.
    assert stub.searches == [{"AccessionNumber": ACCESSION}]
    assert stub.fetches == [pacs_study[0].StudyInstanceUID]
    # It behaves like an uploaded study: listed, described, rendered, linked to the session.
    assert [s["id"] for s in alice.get("/api/studies").json()] == [study["id"]]
    assert alice.get(f"/api/studies/{study['id']}").json()["n_images"] == 3
    png = alice.get(f"/api/studies/{study['id']}/images/2.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert alice.get(f"/api/sessions/{session}").json()["study_id"] == study["id"]
    # Nothing identifying in the answer or the database; the raw instances are gone from disk.
    dump = _db_dump(app)
    for value in _secrets(pacs_study):
        assert value not in r.text and value not in dump
    with app.state.zebra.store.session() as s:
        import store

        events = s.scalars(select(store.AuditEvent).where(store.AuditEvent.action == "study.upload")).all()
        details = [e.details for e in events]
    assert [(d["origin"], d["files"]) for d in details] == [("pacs", 3)]  # the audit says where it came from
    assert _incoming_is_empty(app)


def test_open_by_study_uid_as_prior(alice, stub: StubPacs, pacs_study: list[Any]) -> None:
    session = alice.post("/api/sessions", json={}).json()["id"]
    uid = pacs_study[0].StudyInstanceUID
    r = _open(alice, study_uid=uid, role="prior", session_id=session)
    assert r.status_code == 201, r.text
    assert stub.searches == [{"StudyInstanceUID": uid}] and r.json()["role"] == "prior"
    assert alice.get(f"/api/sessions/{session}").json()["prior_study_id"] == r.json()["id"]


# ---------------------------------------------------------------------------------------------------- failures
def test_no_matching_study_is_a_clear_404(alice, stub: StubPacs, app) -> None:
    r = _open(alice, accession="NOSUCH1")
    assert r.status_code == 404
    assert "No study on the PACS" in r.json()["error"] and "NOSUCH1" not in r.text
    r = _open(alice, study_uid="1.2.3.999")
    assert r.status_code == 404 and "Study UID" in r.json()["error"] and "1.2.3.999" not in r.text
    assert stub.fetches == [] and alice.get("/api/studies").json() == []
    assert _incoming_is_empty(app)


def test_an_accession_number_shared_by_two_studies_is_refused(
    alice, monkeypatch: pytest.MonkeyPatch, pacs_study: list[Any]
) -> None:
    from pacs.samples import sample_study
    from zebra_web import pacs_open

    pacs = StubPacs([pacs_study, sample_study(ACCESSION, slices=1)])
    monkeypatch.setattr(pacs_open, "make_client", lambda settings: pacs)
    r = _open(alice, accession=ACCESSION)
    assert r.status_code == 409 and "Study UID" in r.json()["hint"] and pacs.fetches == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_pacs_is_a_generic_503_with_nothing_secret_in_the_answer_or_the_log(
    pacs_app, users, web, caplog: pytest.LogCaptureFixture, pacs_study: list[Any]
) -> None:
    # The real client against a loopback port nobody listens on, with credentials in the settings.
    port = _closed_port()
    password = "pw-Zq8s1-never-shown"
    app = pacs_app(
        url=f"http://127.0.0.1:{port}/secret-path/dicom-web", username="pacsuser", password=password
    )
    caplog.set_level(logging.INFO)
    with web.sign_in(app, "alice") as c:
        r = _open(c, accession=ACCESSION)
        r_uid = _open(c, study_uid=pacs_study[0].StudyInstanceUID)
    assert r.status_code == r_uid.status_code == 503
    assert r.json() == r_uid.json()  # one generic message whatever was asked
    assert r.json()["error"] == "The PACS could not be reached."
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "DicomwebUnreachableError" in logged  # the details are in the log ...
    for secret in (str(port), "secret-path", "pacsuser", password, ACCESSION, pacs_study[0].StudyInstanceUID):
        assert secret not in r.text and secret not in r_uid.text and secret not in logged  # ... but no secret
    assert _incoming_is_empty(app)


def test_refused_credentials_server_errors_and_bad_settings_are_the_same_generic_503(
    alice,
    app,
    stub: StubPacs,
    pacs_app,
    web,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pacs.client import DicomwebClient
    from pacs.errors import DicomwebAuthError, DicomwebError
    from zebra_web import pacs_open

    caplog.set_level(logging.INFO)
    for failure in (
        DicomwebAuthError("refused (HTTP 401)"),
        DicomwebError("failed (HTTP 500)"),
        RuntimeError(),
    ):
        stub.fail = failure
        r = _open(alice, accession=ACCESSION)
        assert r.status_code == 503 and r.json()["error"] == "The PACS could not be reached.", r.text
        assert type(failure).__name__ in caplog.text
    # A URL that is not http(s) is the operator's mistake: the same answer, never the URL.
    monkeypatch.setattr(pacs_open, "make_client", DicomwebClient.from_settings)
    with web.sign_in(pacs_app(url="ftp://pacs.internal.example/dicom-web"), "bob") as c:
        r = _open(c, accession=ACCESSION)
    assert r.status_code == 503 and "pacs.internal" not in r.text and "pacs.internal" not in caplog.text


def test_a_malformed_object_from_the_pacs_is_refused_by_intake_like_a_bad_upload(
    alice, app, stub: StubPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr(stub, "fetch_study", lambda uid: [b"DICM" + os.urandom(400)])
    r = _open(alice, accession=ACCESSION)
    assert r.status_code in (415, 422) and r.json()["error"]  # as for the same bytes uploaded
    assert alice.get("/api/studies").json() == [] and _incoming_is_empty(app)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"accession": "   "},
        {"accession": ACCESSION, "study_uid": "1.2.3"},
        {"accession": "ZW*"},
        {"accession": "ZW?1"},
        {"accession": "A,B"},
        {"accession": "A\\B"},
        {"accession": "A=1&B"},
        {"accession": "X" * 17},
        {"accession": "Zw\u00e9"},
        {"accession": "A\tB"},
        {"study_uid": "1.2.abc"},
        {"study_uid": "1..2"},
        {"study_uid": "12345"},
        {"study_uid": "1." + "2" * 63},
        {"study_uid": "1.2.3*"},
        {"accession": ACCESSION, "role": "sideways"},
        {"accession": ACCESSION, "url": "http://evil.example/dicom-web"},
        {"accession": 4711},
    ],
)
def test_bad_input_is_refused_before_the_pacs_is_asked(alice, stub: StubPacs, body: dict[str, Any]) -> None:
    r = _open(alice, **body)
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"] and stub.calls == 0
    for value in body.values():  # the refused value is not echoed (the role names itself, as for uploads)
        if isinstance(value, str) and len(value.strip()) > 3 and value != "sideways":
            assert value not in r.text


def test_not_configured_is_a_clear_409_and_no_pacs_is_asked(make_app, users, web, stub: StubPacs) -> None:
    with web.sign_in(make_app(), "alice") as c:
        r = _open(c, accession=ACCESSION)
    assert r.status_code == 409 and "not set up" in r.json()["error"] and stub.calls == 0


def test_csrf_is_required_with_a_cookie_session(alice, stub: StubPacs) -> None:
    token = alice.headers.pop("X-CSRF-Token")
    try:
        r = _open(alice, accession=ACCESSION)
    finally:
        alice.headers["X-CSRF-Token"] = token
    assert r.status_code == 403 and stub.calls == 0


# ---------------------------------------------------------------------------------------------------- limits
def test_the_upload_limits_and_the_quota_apply(pacs_app, users, web, stub: StubPacs, pacs_study) -> None:
    size = sum(len(_part10(ds)) for ds in pacs_study)
    for server, status in (
        ({"max_upload_files": 2}, 413),
        ({"max_upload_bytes": size - 1}, 413),
        ({"storage_quota_bytes": size // 2}, 413),
    ):
        app = pacs_app(server=server)
        with web.sign_in(app, "alice") as c:
            r = _open(c, accession=ACCESSION)
            assert r.status_code == status and r.json()["error"], (server, r.text)
            assert c.get("/api/studies").json() == [] and _incoming_is_empty(app)


def test_in_flight_limit_applies(pacs_app, users, web, stub: StubPacs) -> None:
    app = pacs_app(server={"max_inflight_per_user": 1})
    with web.sign_in(app, "alice") as c:
        app.state.zebra.inflight.acquire(users["alice"])  # an upload or question of hers still running
        try:
            r = _open(c, accession=ACCESSION)
        finally:
            app.state.zebra.inflight.release(users["alice"])
        assert r.status_code == 429 and stub.calls == 0
        assert _open(c, accession=ACCESSION).status_code == 201


# ---------------------------------------------------------------------------------------------------- isolation
def test_users_are_isolated(alice, bob, app, stub: StubPacs) -> None:
    mine = _open(alice, accession=ACCESSION).json()
    assert bob.get(f"/api/studies/{mine['id']}").status_code == 404
    assert bob.get(f"/api/studies/{mine['id']}/images/0.png").status_code == 404
    assert bob.get("/api/studies").json() == []
    # Bob cannot attach a PACS study to Alice's session (and the PACS is not even asked).
    session = alice.post("/api/sessions", json={}).json()["id"]
    calls = stub.calls
    r = _open(bob, accession=ACCESSION, session_id=session)
    assert r.status_code == 404 and stub.calls == calls
    assert alice.get(f"/api/sessions/{session}").json()["study_id"] is None
    # The same PACS study opened by Bob is his own copy.
    theirs = _open(bob, accession=ACCESSION).json()
    assert theirs["id"] != mine["id"]
    assert [s["id"] for s in bob.get("/api/studies").json()] == [theirs["id"]]
    assert [s["id"] for s in alice.get("/api/studies").json()] == [mine["id"]]
    with app.state.zebra.store.session() as s:
        import store

        owners = dict(s.execute(select(store.Study.id, store.Study.owner_user_id)).all())
    assert owners[mine["id"]] != owners[theirs["id"]]
