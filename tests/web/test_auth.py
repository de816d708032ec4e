"""Authentication, CSRF, throttling, security headers and the first administrator."""

from __future__ import annotations

import os
import re
import stat
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update


def _walk(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes)
        elif getattr(route, "methods", None):
            yield route


def _all_api_operations(app) -> set[tuple[str, str]]:
    ops = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    for route in _walk(app.routes):
        if route.path.startswith("/api") or route.path == "/openapi.json":
            ops |= {(m, route.path) for m in route.methods if m != "HEAD"}
    return ops


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: {"{n}": "0", "{study_id}": "1"}.get(m.group(0), "a" * 64), path)


def test_every_api_route_needs_authentication(app, users):
    ops = _all_api_operations(app)
    # The route table really was walked: the chat, upload and image routes are all in it.
    assert ("POST", "/api/sessions/{session_id}/messages") in ops
    assert ("POST", "/api/studies") in ops
    assert ("GET", "/api/studies/{study_id}/images/{n}.png") in ops
    assert len(ops) >= 17
    anonymous = TestClient(app)
    checked = 0
    for method, path in sorted(ops):
        if path == "/api/auth/login":
            continue
        r = anonymous.request(method, _fill(path))
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"] and r.json()["hint"]
        checked += 1
    assert checked == len(ops) - 1
    # A wrong token is no better than none, and unknown API paths are not disclosed either.
    bad = TestClient(app, headers={"Authorization": "Bearer not-a-token"})
    assert bad.get("/api/me").status_code == 401
    assert anonymous.get("/api/does-not-exist").status_code == 401


def test_login_me_logout(app, users, web):
    c = TestClient(app)
    r = c.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["username"] == "bob" and body["csrf_token"] and body.get("token") is None
    cookie = r.headers.get_list("set-cookie")
    session_cookie = next(h for h in cookie if h.startswith("zebra_session="))
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie.replace("Strict", "strict")
    me = c.get("/api/me").json()
    assert me == {**me, "username": "bob", "is_admin": False, "auth": "cookie"}
    # Logout needs the CSRF header like every state change by cookie, then the token is dead.
    assert c.post("/api/auth/logout").status_code == 403
    token_cookie = c.cookies.get("zebra_session")
    assert c.post("/api/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]}).status_code == 204
    again = TestClient(app, cookies={"zebra_session": token_cookie})
    assert again.get("/api/me").status_code == 401


def test_wrong_password_and_unknown_user(app, users, web):
    c = TestClient(app)
    r = c.post("/api/auth/login", json={"username": "bob", "password": "wrong password!"})
    assert r.status_code == 401 and r.json()["error"] == "Wrong user name or password."
    r2 = c.post("/api/auth/login", json={"username": "nobody", "password": "wrong password!"})
    assert r2.status_code == 401 and r2.json() == r.json()
    assert "zebra_session" not in c.cookies


def test_passwords_and_tokens_are_stored_hashed(app, users, web):
    import store

    c = TestClient(app)
    token = c.post(
        "/api/auth/login", json={"username": "bob", "password": web.PASSWORD, "bearer": True}
    ).json()["token"]
    with app.state.zebra.store.session() as s:
        user = s.scalar(select(store.User).where(store.User.username == "bob"))
        assert user.password_hash.startswith("$argon2id$") and web.PASSWORD not in user.password_hash
        hashes = s.scalars(select(store.AuthToken.token_hash)).all()
    assert hashes and token not in hashes and all(len(h) == 64 for h in hashes)


def test_bearer_token_needs_no_csrf(app, users, web):
    c = TestClient(app)
    r = c.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD, "bearer": True})
    token = r.json()["token"]
    assert r.json()["csrf_token"] is None and "zebra_session" not in c.cookies
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/me").json()["auth"] == "bearer"
    assert api.post("/api/sessions", json={}).status_code == 201


def test_token_expiry(app, users, web):
    import store

    c = TestClient(app)
    token = c.post(
        "/api/auth/login", json={"username": "bob", "password": web.PASSWORD, "bearer": True}
    ).json()["token"]
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/me").status_code == 200
    with app.state.zebra.store.session() as s:
        s.execute(update(store.AuthToken).values(expires_at=store.utcnow() - timedelta(seconds=1)))
    r = api.get("/api/me")
    assert r.status_code == 401 and "expired" in r.json()["error"]


def test_session_lifetime_follows_settings(make_app, web):
    import store
    from zebra_web.users import create_user

    app = make_app(server={"session_ttl_hours": 2})
    create_user(app.state.zebra.store, "carol", web.PASSWORD)
    r = TestClient(app).post("/api/auth/login", json={"username": "carol", "password": web.PASSWORD})
    assert "Max-Age=7200" in r.headers["set-cookie"]
    with app.state.zebra.store.session() as s:
        row = s.scalars(select(store.AuthToken)).one()
        assert timedelta(hours=1.9) < row.expires_at - store.utcnow() <= timedelta(hours=2)


def test_csrf_required_for_cookie_state_changes(app, users, web):
    c = TestClient(app)
    csrf = c.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD}).json()["csrf_token"]
    r = c.post("/api/sessions", json={})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert c.post("/api/sessions", json={}, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert c.post("/api/sessions", json={}, headers={"X-CSRF-Token": csrf}).status_code == 201
    # Reads need no CSRF token.
    assert c.get("/api/sessions").status_code == 200


def test_login_throttling(make_app, users, web):
    from zebra_web.ratelimit import LoginThrottle

    now = [1000.0]
    app = make_app(throttle=LoginThrottle(free_failures=3, base_delay_s=2.0, clock=lambda: now[0]))
    from zebra_web.users import create_user

    create_user(app.state.zebra.store, "dave", web.PASSWORD)
    c = TestClient(app)
    for _ in range(3):
        assert (
            c.post("/api/auth/login", json={"username": "dave", "password": "bad password"}).status_code
            == 401
        )
    r = c.post("/api/auth/login", json={"username": "dave", "password": web.PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["hint"]
    now[0] += 3.0
    assert c.post("/api/auth/login", json={"username": "dave", "password": web.PASSWORD}).status_code == 200


def test_throttle_backoff_grows():
    from zebra_web.errors import RateLimitedError
    from zebra_web.ratelimit import LoginThrottle

    now = [0.0]
    t = LoginThrottle(free_failures=1, free_failures_per_ip=100, base_delay_s=1.0, clock=lambda: now[0])
    waits = []
    for _ in range(4):
        t.failure("1.2.3.4", "eve")
        with pytest.raises(RateLimitedError) as info:
            t.check("1.2.3.4", "eve")
        waits.append(info.value.retry_after)
        now[0] += 100
    assert waits == sorted(waits) and waits[-1] > waits[0]
    t.success("1.2.3.4", "eve")
    t.check("1.2.3.4", "eve")  # cleared by the success
    t.check("5.6.7.8", "frank")


def test_security_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/api/me").headers["x-frame-options"] == "DENY"
    assert "Research use only" in r.text


def test_page_loads_nothing_from_elsewhere(client):
    for path in ("/", "/docs", "/static/app.js", "/static/docs.js", "/static/app.css"):
        text = client.get(path).text
        assert client.get(path).status_code == 200
        assert not re.search(r"(src|href)=\"https?://", text), path
        if path.startswith("/static/"):
            assert not re.search(r"https?://", text), path


def test_admin_creates_users_others_cannot(alice, bob, app, web):
    r = alice.post("/api/users", json={"username": "gina", "password": web.PASSWORD})
    assert r.status_code == 201 and r.json()["username"] == "gina"
    assert alice.post("/api/users", json={"username": "gina", "password": web.PASSWORD}).status_code == 400
    weak = alice.post("/api/users", json={"username": "hal", "password": "short"})
    assert weak.status_code == 400 and "at least" in weak.json()["error"]
    assert bob.post("/api/users", json={"username": "ivan", "password": web.PASSWORD}).status_code == 403
    assert (
        TestClient(app)
        .post("/api/auth/login", json={"username": "gina", "password": web.PASSWORD})
        .is_success
    )


def test_audit_events_for_login(app, users, web):
    import store

    c = TestClient(app)
    c.post("/api/auth/login", json={"username": "bob", "password": "nope nope nope"})
    c.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD})
    with app.state.zebra.store.session() as s:
        actions = [e.action for e in s.scalars(select(store.AuditEvent).order_by(store.AuditEvent.id))]
        details = [e.details for e in s.scalars(select(store.AuditEvent))]
    assert "auth.login_failed" in actions and "auth.login" in actions
    assert all(web.PASSWORD not in str(d) for d in details)


def test_initial_admin_random_password(zebra_env, web):
    from store import Store
    from zebra_web.passwords import verify_password
    from zebra_web.users import ensure_initial_admin

    store = Store(f"sqlite:///{zebra_env / 'zebra.db'}")
    store.upgrade()
    first = ensure_initial_admin(store, zebra_env, environ={})
    assert first is not None and first.username == "admin" and len(first.password) >= 16
    path = zebra_env / "secret" / "initial_admin_password"
    assert path.read_text().strip() == first.password
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_initial_admin(store, zebra_env, environ={}) is None  # only on an empty database
    import store as st

    with store.session() as s:
        user = s.scalar(select(st.User))
        assert user.is_admin and verify_password(user.password_hash, first.password)
    # Two fresh installations never share a password.
    other = Store("sqlite:///:memory:")
    other.upgrade()
    assert ensure_initial_admin(other, zebra_env / "b", environ={}).password != first.password


def test_initial_admin_from_environment(zebra_env, web):
    from store import Store
    from zebra_web.users import ensure_initial_admin

    store = Store("sqlite:///:memory:")
    store.upgrade()
    made = ensure_initial_admin(
        store, zebra_env, environ={"ZEBRA_ADMIN_USER": "root2", "ZEBRA_ADMIN_PASSWORD": web.PASSWORD}
    )
    assert made.username == "root2" and made.password is None
    assert not (zebra_env / "secret" / "initial_admin_password").exists()
