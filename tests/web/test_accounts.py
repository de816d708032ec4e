"""Issue 15, account management: passwords, disabling, revoking sessions and deleting users, from the CLI and
the API; a user's own password change; deleting one's studies (nothing left behind); quota; retention purge.
"""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import text

NEW_PASSWORD = "a much better passphrase"


def _login(app, username: str, password: str) -> int:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        return c.post("/api/auth/login", json={"username": username, "password": password}).status_code


@pytest.fixture
def cli(zebra_env):
    import zebra_cli
    import zebra_cli.db
    import zebra_cli.web  # registers the commands

    return zebra_cli


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_passwd_disable_enable_revoke_delete(cli, app, users, web, monkeypatch, capsys):
    with web.sign_in(app, "bob") as bob:
        assert bob.get("/api/me").status_code == 200
        cli.main(["user", "revoke", "bob"])
        assert "1 session" in capsys.readouterr().out
        assert bob.get("/api/me").status_code == 401

    with web.sign_in(app, "bob") as bob:
        cli.main(["user", "disable", "bob"])
        assert bob.get("/api/me").status_code == 401  # signed out at once
        assert _login(app, "bob", web.PASSWORD) == 401
        cli.main(["user", "list"])
        assert "bob\t(disabled)" in capsys.readouterr().out
        cli.main(["user", "enable", "bob"])
        assert _login(app, "bob", web.PASSWORD) == 200

    with web.sign_in(app, "bob") as bob:
        monkeypatch.setenv("ZEBRA_ADMIN_PASSWORD", NEW_PASSWORD)
        cli.main(["user", "passwd", "bob"])
        assert bob.get("/api/me").status_code == 401  # sessions revoked on password change
    assert _login(app, "bob", web.PASSWORD) == 401
    assert _login(app, "bob", NEW_PASSWORD) == 200

    # Rotating the generated administrator password: printed once, the old one stops working.
    monkeypatch.delenv("ZEBRA_ADMIN_PASSWORD")
    cli.main(["user", "passwd", "alice", "--generate"])
    generated = capsys.readouterr().out.split("(shown once): ")[1].strip()
    assert _login(app, "alice", web.PASSWORD) == 401 and _login(app, "alice", generated) == 200

    cli.main(["user", "delete", "bob", "--yes"])
    assert "Deleted 'bob'" in capsys.readouterr().out
    assert _login(app, "bob", NEW_PASSWORD) == 401
    cli.main(["user", "list"])
    assert "bob" not in capsys.readouterr().out

    with pytest.raises(SystemExit) as info:
        cli.main(["user", "disable", "nobody"])
    assert info.value.code != 0 and "No user 'nobody'" in capsys.readouterr().err
    # The last active administrator cannot be disabled or deleted (nobody could manage users then).
    with pytest.raises(SystemExit):
        cli.main(["user", "disable", "alice"])
    assert "last active administrator" in capsys.readouterr().err


def test_rotating_the_generated_admin_password_removes_its_file(cli, zebra_env, capsys):
    from store import Store
    from zebra_web.users import INITIAL_PASSWORD_FILE, ensure_initial_admin

    store = Store(f"sqlite:///{zebra_env / 'zebra.db'}")
    store.upgrade()
    admin = ensure_initial_admin(store, zebra_env, environ={})
    assert admin is not None and (zebra_env / INITIAL_PASSWORD_FILE).is_file()
    cli.main(["user", "passwd", "admin", "--generate"])
    new = capsys.readouterr().out.split("(shown once): ")[1].strip()
    assert new != admin.password and not (zebra_env / INITIAL_PASSWORD_FILE).exists()


# --- API: administrators ----------------------------------------------------------------------------------


def test_admin_manages_users_in_the_api(app, alice, users, web):
    with web.sign_in(app, "bob") as bob:
        assert bob.get("/api/users").status_code == 403
        assert bob.patch("/api/users/alice", json={"is_active": False}).status_code == 403
        assert bob.delete("/api/users/alice").status_code == 403

        listed = {u["username"]: u for u in alice.get("/api/users").json()}
        assert listed["bob"]["is_active"] and listed["bob"]["sessions"] == 1

        r = alice.patch("/api/users/bob", json={"is_active": False})
        assert r.status_code == 200 and r.json()["is_active"] is False and r.json()["sessions"] == 0
        assert bob.get("/api/me").status_code == 401
    assert _login(app, "bob", web.PASSWORD) == 401
    assert alice.patch("/api/users/bob", json={"is_active": True}).json()["is_active"] is True

    with web.sign_in(app, "bob") as bob:
        r = alice.post("/api/users/bob/revoke")
        assert r.status_code == 200 and r.json() == {"revoked": 1}
        assert bob.get("/api/me").status_code == 401

    with web.sign_in(app, "bob") as bob:
        assert alice.patch("/api/users/bob", json={"password": NEW_PASSWORD}).status_code == 200
        assert bob.get("/api/me").status_code == 401
    assert _login(app, "bob", NEW_PASSWORD) == 200

    # Not one's own account, and nobody that does not exist.
    assert alice.patch("/api/users/alice", json={"is_active": False}).status_code == 400
    assert alice.delete("/api/users/alice").status_code == 400
    assert alice.delete("/api/users/nobody").status_code == 404

    with web.sign_in(app, "bob", NEW_PASSWORD) as bob:
        study = web.upload(bob, [("a.png", web.png_bytes())]).json()
    assert alice.delete("/api/users/bob").status_code == 204
    assert "bob" not in {u["username"] for u in alice.get("/api/users").json()}
    with app.state.zebra.store.session() as s:
        assert s.execute(text("SELECT count(*) FROM studies WHERE id = :i"), {"i": study["id"]}).scalar() == 0


# --- API: one's own account -------------------------------------------------------------------------------


def test_change_my_password_revokes_my_other_sessions(app, users, web):
    with web.sign_in(app, "bob") as bob, web.sign_in(app, "bob") as elsewhere:
        wrong = bob.post(
            "/api/me/password", json={"current_password": "not it!!", "new_password": NEW_PASSWORD}
        )
        assert wrong.status_code == 401
        weak = bob.post("/api/me/password", json={"current_password": web.PASSWORD, "new_password": "short"})
        assert weak.status_code == 400
        r = bob.post(
            "/api/me/password", json={"current_password": web.PASSWORD, "new_password": NEW_PASSWORD}
        )
        assert r.status_code == 204, r.text
        assert bob.get("/api/me").status_code == 200  # this session stays
        assert elsewhere.get("/api/me").status_code == 401  # the others are signed out
    assert _login(app, "bob", web.PASSWORD) == 401
    assert _login(app, "bob", NEW_PASSWORD) == 200


def test_guessing_the_current_password_is_throttled(app, users, web):
    with web.sign_in(app, "bob") as bob:
        statuses = [
            bob.post(
                "/api/me/password", json={"current_password": f"guess {i}!", "new_password": NEW_PASSWORD}
            ).status_code
            for i in range(7)
        ]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses


def test_sign_out_my_other_sessions(app, users, web):
    with web.sign_in(app, "bob") as bob, web.sign_in(app, "bob") as elsewhere:
        assert bob.post("/api/me/sessions/revoke").json() == {"revoked": 1}
        assert bob.get("/api/me").status_code == 200 and elsewhere.get("/api/me").status_code == 401


# --- Deleting a study ------------------------------------------------------------------------------------


def _db_dump(app, skip: tuple[str, ...] = ()) -> str:
    with app.state.zebra.store.engine.connect() as conn:
        tables = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        tables = [t for t in tables if t not in skip]
        return json.dumps(
            [[t, *map(str, row)] for t in tables for row in conn.execute(text(f'SELECT * FROM "{t}"'))]
        )


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_deleting_a_study_leaves_nothing_behind(app, alice, bob, web, zebra_env, ct_small):
    ctx = app.state.zebra
    kept = web.upload(bob, [("b.png", web.png_bytes(seed=3))]).json()  # someone else's: must stay
    study = web.upload(alice, [("a.dcm", ct_small.read_bytes())]).json()
    session = alice.post("/api/sessions", json={"study_id": study["id"]}).json()
    web.ask(alice, session["id"], image_index=0)
    with ctx.store.session() as s:
        uid = s.execute(text("SELECT study_uid FROM studies WHERE id = :i"), {"i": study["id"]}).scalar()
        patient = s.execute(text("SELECT patient_id FROM studies WHERE id = :i"), {"i": study["id"]}).scalar()
    assert any(uid in f for f in _files(zebra_env))  # images and overlays are on disk
    assert ctx.overlays.heatmap_path(uid, 0) is not None

    assert bob.delete(f"/api/studies/{study['id']}").status_code == 404  # only the owner may
    r = alice.delete(f"/api/studies/{study['id']}")
    assert r.status_code == 204, r.text

    assert alice.get(f"/api/studies/{study['id']}").status_code == 404
    assert alice.get(f"/api/sessions/{session['id']}").status_code == 404
    assert not any(uid in f for f in _files(zebra_env)), _files(zebra_env)
    assert not (zebra_env / "studies" / uid).exists() and not ctx.overlays.study_dir(uid).exists()
    dump = _db_dump(app)
    assert uid not in dump
    # Only the audit trail still names the chat session (by id: who asked, when; never what).
    assert session["id"] not in _db_dump(app, skip=("audit_events",))
    with ctx.store.session() as s:
        counts = {
            table: s.execute(text(f"SELECT count(*) FROM {table} WHERE {col} = :v"), {"v": value}).scalar()
            for table, col, value in (
                ("studies", "id", study["id"]),
                ("series", "study_id", study["id"]),
                ("patients", "id", patient),
                ("chat_sessions", "id", session["id"]),
                ("chat_messages", "session_id", session["id"]),
            )
        }
    assert counts == dict.fromkeys(counts, 0)
    # The raw database file keeps no copy of the deleted rows either (secure_delete, WAL checkpointed).
    raw = b"".join(p.read_bytes() for p in zebra_env.glob("zebra.db*"))
    assert uid.encode() not in raw
    assert bob.get(f"/api/studies/{kept['id']}").status_code == 200


def test_deleted_study_audit_keeps_no_patient_data(app, alice, web):
    study = web.upload(alice, [("Jane Doe.png", web.png_bytes())]).json()
    assert alice.delete(f"/api/studies/{study['id']}").status_code == 204
    with app.state.zebra.store.session() as s:
        row = s.execute(text("SELECT details FROM audit_events WHERE action = 'study.delete'")).scalar()
    assert "Jane" not in str(row) and '"reason": "owner"' in str(row)


# --- Quota and retention ---------------------------------------------------------------------------------


def test_storage_quota_gives_a_clear_413(make_app, users, web):
    app = make_app(server={"storage_quota_bytes": 1000})
    with web.sign_in(app, "bob") as bob:
        r = web.upload(bob, [("a.png", web.png_bytes(size=128))])
        assert r.status_code == 413 and "quota" in r.json()["error"] and r.json()["hint"]
        assert bob.get("/api/studies").json() == []
    app = make_app(server={"storage_quota_bytes": 10 * 1024 * 1024})
    with web.sign_in(app, "bob") as bob:
        assert web.upload(bob, [("a.png", web.png_bytes())]).status_code == 201
        used = bob.get("/api/me/storage").json()
        assert 0 < used["used_bytes"] < used["quota_bytes"]
    app = make_app(server={"storage_quota_bytes": used["used_bytes"]})
    with web.sign_in(app, "bob") as bob:
        r = web.upload(bob, [("b.png", web.png_bytes(seed=1))])
        assert r.status_code == 413 and "quota" in r.json()["error"]


def test_purge_deletes_studies_past_retention(cli, app, alice, web, zebra_env, capsys):
    old = web.upload(alice, [("a.png", web.png_bytes(seed=1))]).json()
    new = web.upload(alice, [("b.png", web.png_bytes(seed=2))]).json()
    with app.state.zebra.store.session() as s:
        s.execute(
            text("UPDATE studies SET created_at = datetime('now', '-40 days') WHERE id = :i"),
            {"i": old["id"]},
        )
    with pytest.raises(SystemExit):
        cli.main(["db", "purge"])  # no retention period set
    assert "retention" in capsys.readouterr().err
    cli.main(["db", "purge", "--days", "30", "--dry-run"])
    assert json.loads(capsys.readouterr().out)["ids"] == [old["id"]]
    assert alice.get(f"/api/studies/{old['id']}").status_code == 200
    cli.main(["db", "purge", "--days", "30"])
    assert json.loads(capsys.readouterr().out) == {
        "days": 30,
        "dry_run": False,
        "studies": 1,
        "ids": [old["id"]],
    }
    assert alice.get(f"/api/studies/{old['id']}").status_code == 404
    assert alice.get(f"/api/studies/{new['id']}").status_code == 200
