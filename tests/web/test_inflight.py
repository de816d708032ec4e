"""Issue 15, problem 5: one user's queued questions must not stall everyone, and are capped per user.

Before the fix each queued question held one of the shared worker threads while it waited for the agent;
the token check of every request needs the same pool, so ``GET /api/me`` went from milliseconds to
seconds with 60 questions queued. Here the agent blocks until the test releases it, so the queued work
would take forever: a stall shows up as a timeout, not as a small difference in milliseconds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest


class BlockingAgent:
    """Answers only once ``release`` is set (at most 60 s); counts the questions it was asked."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.asked = 0
        self._lock = threading.Lock()

    def ask(self, question: str, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.asked += 1
        self.release.wait(60)
        return self.inner.ask(question, **kwargs)


@pytest.fixture
def blocking_agent(scripted_agent) -> BlockingAgent:
    return BlockingAgent(scripted_agent)


def _bearer(url: str, username: str, password: str) -> dict[str, str]:
    r = httpx.post(f"{url}/api/auth/login", json={"username": username, "password": password, "bearer": True})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _ask(url: str, auth: dict[str, str], session_id: str, question: str) -> tuple[int, str]:
    path = f"/api/sessions/{session_id}/messages"
    with (
        httpx.Client(base_url=url, headers=auth, timeout=90) as c,
        c.stream("POST", path, json={"question": question}) as r,
    ):
        return r.status_code, r.read().decode()


def _wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.05)


def test_queued_questions_do_not_stall_other_requests(make_app, users, serve, blocking_agent, web):
    app = make_app(agent_factory=lambda: blocking_agent, server={"max_inflight_per_user": 100})
    url = serve(app)
    ctx = app.state.zebra
    bob = _bearer(url, "bob", web.PASSWORD)
    alice = _bearer(url, "alice", web.PASSWORD)
    session_id = httpx.post(f"{url}/api/sessions", json={}, headers=bob).json()["id"]
    n = 60
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(_ask, url, bob, session_id, f"question {i}") for i in range(n)]
        try:
            # All 60 accepted and waiting: one with the agent, the others queued for it.
            _wait_for(lambda: ctx.inflight.count(users["bob"]) == n and ctx.agent.slots.waiting == n - 1)
            latencies = []
            with httpx.Client(base_url=url, timeout=10) as c:
                for who in (alice, bob, alice):
                    start = time.monotonic()
                    r = c.get("/api/me", headers=who)
                    latencies.append(time.monotonic() - start)
                    assert r.status_code == 200
            # Generous bound for a loaded 2-core machine; the stall it guards against never ends here.
            assert max(latencies) < 1.0, latencies
        finally:
            blocking_agent.release.set()
        results = [f.result(timeout=120) for f in futures]
    assert all(status == 200 and "event: final" in body for status, body in results)
    assert blocking_agent.asked == n
    assert ctx.inflight.count(users["bob"]) == 0


def test_questions_and_uploads_in_flight_are_capped_per_user(make_app, users, serve, blocking_agent, web):
    app = make_app(agent_factory=lambda: blocking_agent, server={"max_inflight_per_user": 3})
    url = serve(app)
    ctx = app.state.zebra
    bob = _bearer(url, "bob", web.PASSWORD)
    alice = _bearer(url, "alice", web.PASSWORD)
    bob_session = httpx.post(f"{url}/api/sessions", json={}, headers=bob).json()["id"]
    alice_session = httpx.post(f"{url}/api/sessions", json={}, headers=alice).json()["id"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        held = [pool.submit(_ask, url, bob, bob_session, f"q{i}") for i in range(3)]
        try:
            _wait_for(lambda: ctx.inflight.count(users["bob"]) == 3)
            refused = [_ask(url, bob, bob_session, "one too many") for _ in range(2)]
            assert [status for status, _ in refused] == [429, 429]
            with httpx.Client(base_url=url, headers=bob, timeout=30) as c:
                r = c.post("/api/studies", files=[("files", ("a.png", web.png_bytes()))])
                assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
                assert "in progress" in r.json()["error"]
            # Another user is not affected.
            other = pool.submit(_ask, url, alice, alice_session, "mine")
            _wait_for(lambda: ctx.inflight.count(users["alice"]) == 1)
        finally:
            blocking_agent.release.set()
        assert all(f.result(timeout=60)[0] == 200 for f in [*held, other])
    assert ctx.inflight.count(users["bob"]) == 0
    # Once the answers are in, bob may ask again.
    assert _ask(url, bob, bob_session, "again")[0] == 200


def test_queued_uploads_do_not_stall_other_requests(make_app, users, serve, web, monkeypatch):
    from zebra_web.routes import studies as study_routes

    release = threading.Event()
    parse = study_routes._parse

    def held(ctx, source, scratch):  # the parser never finishes until released
        release.wait(60)
        return parse(ctx, source, scratch)

    monkeypatch.setattr(study_routes, "_parse", held)
    app = make_app(server={"max_inflight_per_user": 100})
    url = serve(app)
    ctx = app.state.zebra
    bob = _bearer(url, "bob", web.PASSWORD)
    alice = _bearer(url, "alice", web.PASSWORD)
    n = 50

    def upload(i: int) -> int:
        files = [("files", (f"{i}.png", web.png_bytes(seed=i)))]
        return httpx.post(f"{url}/api/studies", files=files, headers=bob, timeout=90).status_code

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(upload, i) for i in range(n)]
        try:
            # Two being parsed (the parser slots), the rest waiting for a slot on the event loop.
            _wait_for(lambda: ctx.intake_slots.busy == 2 and ctx.intake_slots.waiting == n - 2)
            start = time.monotonic()
            r = httpx.get(f"{url}/api/me", headers=alice, timeout=10)
            assert r.status_code == 200 and time.monotonic() - start < 1.0
        finally:
            release.set()
        assert [f.result(timeout=120) for f in futures] == [201] * n
