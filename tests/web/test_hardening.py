"""Issue 15, the smaller findings: each test reproduces the attack or the leak first.

Non-ASCII CSRF tokens, browser caching after sign-out, internal details in errors, overlays that outlive a
database, world-readable data, and raw DICOM unpacked in the system temp folder.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import stat
import zipfile
from pathlib import Path

import pytest

from zebra.errors import ConfigError, ZebraError

SECRET_URL = "http://reasoner:hunter2-secret@10.1.2.3:8001/v1"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_non_ascii_csrf_token_is_403_not_500(bob):
    # Before the fix the comparison raised TypeError on a non-ASCII str: 500.
    r = bob.post("/api/sessions", json={}, headers={"X-CSRF-Token": "jeton-\u00e9t\u00e9".encode()})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    raw = bob.post("/api/sessions", json={}, headers={"X-CSRF-Token": b"\xff\xfe"})
    assert raw.status_code == 403


def test_token_comparison_is_bytewise_and_constant_time():
    from zebra_web.auth import csrf_for, csrf_matches, tokens_equal

    assert csrf_matches("tok", csrf_for("tok")) and not csrf_matches("tok", csrf_for("other"))
    assert (
        not tokens_equal("abc", "\u00e4bc")
        and not tokens_equal("abc", None)
        and tokens_equal("\u00e4", "\u00e4")
    )


def test_authenticated_responses_are_not_cached(alice, web):
    study = web.upload(alice, [("a.png", web.png_bytes())]).json()
    for path in ("/api/me", "/api/studies", f"/api/studies/{study['id']}/images/0.png"):
        r = alice.get(path)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", (path, r.headers)
    windowed = alice.get(f"/api/studies/{study['id']}/images/0.png", params={"wc": 100, "ww": 200})
    assert windowed.headers["cache-control"] == "no-store"


def test_agent_errors_reach_users_without_internal_details(make_app, users, web, caplog):
    class LeakyAgent:
        def ask(self, *args, **kwargs):
            raise ZebraError(f"reasoner at {SECRET_URL} replied 502: " + "upstream body " * 30)

    app = make_app(agent_factory=LeakyAgent)
    with web.sign_in(app, "bob") as bob, caplog.at_level(logging.ERROR):
        session = bob.post("/api/sessions", json={}).json()
        kind, data = web.ask(bob, session["id"])[-1]
    assert kind == "error" and data["hint"]
    assert "10.1.2.3" not in str(data) and "hunter2" not in str(data) and "upstream" not in str(data)
    assert "10.1.2.3" in caplog.text and "hunter2" not in caplog.text  # details logged, secret masked


def test_agent_start_failure_hides_its_reason(make_app, users, web, caplog):
    def broken():
        raise ConfigError(f"cannot reach {SECRET_URL}", hint=f"check {SECRET_URL}")

    app = make_app(agent_factory=broken)
    with web.sign_in(app, "bob") as bob, caplog.at_level(logging.ERROR):
        session = bob.post("/api/sessions", json={}).json()
        kind, data = web.ask(bob, session["id"])[-1]
    assert kind == "error" and "could not start" in data["error"]
    assert "hunter2" not in str(data) and "10.1.2.3" not in str(data) and "hunter2" not in caplog.text


def test_server_errors_are_generic(make_app, users, web, monkeypatch):
    from zebra_web.routes import studies as study_routes

    def failing(*args, **kwargs):
        raise ZebraError(f"database {SECRET_URL} went away")

    monkeypatch.setattr(study_routes, "list_studies", failing)
    app = make_app()
    with web.sign_in(app, "bob") as bob:
        r = bob.get("/api/studies")
    assert r.status_code == 500 and r.json()["error"] == "Internal server error."
    assert "hunter2" not in r.text and "10.1.2.3" not in r.text


def test_overlays_do_not_survive_a_database_reset(make_app, users, web, zebra_env, tmp_path):
    """Overlays were stored by database id: a new database reuses ids, and the old heatmap appeared over
    another patient's study."""
    from store import Store
    from zebra_web.users import create_user

    first = make_app()
    with web.sign_in(first, "bob") as bob:
        study = web.upload(bob, [("a.png", web.png_bytes(seed=1))]).json()
        session = bob.post("/api/sessions", json={"study_id": study["id"]}).json()
        web.ask(bob, session["id"], image_index=0)
        assert bob.get(f"/api/studies/{study['id']}/images/0/overlays").json()["available"]
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    second = make_app(store=fresh)
    create_user(fresh, "carol", web.PASSWORD)
    with web.sign_in(second, "carol") as carol:
        other = web.upload(carol, [("b.png", web.png_bytes(seed=2))]).json()
        assert other["id"] == study["id"]  # the same id, another patient
        overlay = carol.get(f"/api/studies/{other['id']}/images/0/overlays").json()
        assert overlay["available"] is False
        assert carol.get(f"/api/studies/{other['id']}/images/0/heatmap.png").status_code == 404


def test_data_is_private_to_the_server_user(app, alice, web, zebra_env):
    study = web.upload(alice, [("a.png", web.png_bytes())]).json()
    session = alice.post("/api/sessions", json={"study_id": study["id"]}).json()
    web.ask(alice, session["id"], image_index=0)
    assert _mode(zebra_env) == 0o700
    assert _mode(zebra_env / "zebra.db") == 0o600
    for folder in ("studies", "web", "web/incoming", "web/overlays"):
        assert _mode(zebra_env / folder) == 0o700, folder
    checked = 0
    for root in (zebra_env / "studies", zebra_env / "web" / "overlays"):
        for dirpath, dirs, files in os.walk(root):
            for name in dirs:
                assert _mode(Path(dirpath) / name) == 0o700, (dirpath, name)
            for name in files:
                assert _mode(Path(dirpath) / name) == 0o600, (dirpath, name)
                checked += 1
    assert checked >= 3  # display PNG, pixels, overlay files


def test_an_existing_world_readable_database_is_made_private(zebra_env):
    from store import Store

    path = zebra_env / "old.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    Store(f"sqlite:///{path}").dispose()
    assert _mode(path) == 0o600


def test_zip_is_unpacked_inside_the_uploads_own_folder(tmp_path, monkeypatch, web):
    """A killed parser left raw (not yet de-identified) DICOM in the system temp folder."""
    import tempfile

    from zebra.config import IntakeSettings
    from zebra_intake import archive
    from zebra_web.intake_worker import _child

    seen: list[Path] = []
    real = archive.extract_zip

    def recording(path, dest, settings):
        seen.append(Path(dest))
        return real(path, dest, settings)

    monkeypatch.setattr(archive, "extract_zip", recording)
    monkeypatch.setattr("zebra_intake.loader.extract_zip", recording, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "system-temp"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("scan.png", web.png_bytes())
    upload = tmp_path / "up-1"
    (upload / "files").mkdir(parents=True)
    (upload / "tmp").mkdir()
    source = upload / "files" / "f00000.zip"
    source.write_bytes(buf.getvalue())
    out: queue.Queue = queue.Queue()
    _child(str(source), IntakeSettings().model_dump(), b"salt" * 8, out, str(upload / "tmp"))
    status, _ = out.get_nowait()
    assert seen, "the zip was not unpacked"
    assert all(p.is_relative_to(upload / "tmp") for p in seen), (seen, status)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7"])
def test_listening_address_is_allowed(web_settings, host):
    from zebra_web.app import _allowed_hosts

    settings = web_settings.model_copy(
        update={"server": web_settings.server.model_copy(update={"host": host})}
    )
    allowed = _allowed_hosts(settings)
    assert allowed.allows(f"{host}:8000") is (host != "0.0.0.0")
    assert allowed.allows("localhost:8000") and not allowed.allows("evil.example")
