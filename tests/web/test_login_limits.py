"""Issue 15, problems 2 and 3: concurrent sign-in attempts, and lock-outs by other clients.

Runs the app under uvicorn on loopback (fixtures ``serve`` and ``loopback`` in conftest): the client
addresses are real, and the whole of 127.0.0.0/8 is loopback, so a client bound to 127.0.0.2 is another
address to the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts password checks (and makes each take 0.3 s, like a real Argon2 check on a busy machine)."""
    from zebra_web.routes import auth as auth_routes

    real = auth_routes.verify_password
    seen = {"checks": 0, "now": 0, "peak": 0}
    lock = threading.Lock()

    def counting(password_hash: str | None, password: str) -> bool:
        with lock:
            seen["checks"] += 1
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            time.sleep(0.3)
            return real(password_hash, password)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(auth_routes, "verify_password", counting)
    return seen


# --- 2. Concurrent sign-in attempts --------------------------------------------------------------------


async def _concurrent_logins(url: str, username: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n + 5, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:

        async def one() -> int:
            r = await c.post("/api/auth/login", json={"username": username, "password": "wrong password!"})
            return r.status_code

        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_concurrent_wrong_passwords_are_throttled(make_app, users, serve, counted_checks):
    url = serve(make_app())
    statuses = asyncio.run(_concurrent_logins(url, "bob", 40))
    assert set(statuses) <= {401, 429, 503}, statuses
    assert counted_checks["checks"] <= 10, (counted_checks, sorted(statuses))
    assert statuses.count(401) == counted_checks["checks"]
    assert statuses.count(429) + statuses.count(503) == 40 - counted_checks["checks"]


def test_password_checks_are_capped_server_wide(make_app, users, serve, counted_checks):
    from zebra_web.ratelimit import PasswordCheckSlots

    # Many user names at once (so no per-name limit applies): at most `slots` hashes run together, and
    # those that find no slot in time get 503 with Retry-After.
    app = make_app(password_checks=PasswordCheckSlots(slots=2, wait_s=0.2))
    url = serve(app)

    async def many() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=30, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
            return list(
                await asyncio.gather(
                    *(
                        c.post("/api/auth/login", json={"username": f"u{i}", "password": "wrong password!"})
                        for i in range(12)
                    )
                )
            )

    responses = asyncio.run(many())
    assert counted_checks["peak"] <= 2, counted_checks
    busy = [r for r in responses if r.status_code == 503]
    assert busy and all(int(r.headers["retry-after"]) >= 1 and r.json()["hint"] for r in busy)
    assert {r.status_code for r in responses} <= {401, 503}


# --- 3. No lock-out by others ------------------------------------------------------------------------------


def test_failures_elsewhere_do_not_lock_out_the_user(make_app, users, serve, web, loopback):
    from zebra_web.ratelimit import LoginThrottle

    # Default limits, but a long first block, so the attacker is still blocked at the end however slow the
    # machine is.
    url = serve(make_app(throttle=LoginThrottle(base_delay_s=60)))
    with loopback(url, "127.0.0.2") as attacker:
        codes = [
            attacker.post(
                "/api/auth/login", json={"username": "bob", "password": "wrong password!"}
            ).status_code
            for _ in range(6)
        ]
    assert codes[:5] == [401] * 5 and codes[5] in (401, 429), codes
    with loopback(url, "127.0.0.1") as owner:
        r = owner.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD})
        assert r.status_code == 200, r.text
    # The attacker's own address stays throttled for that name.
    with loopback(url, "127.0.0.2") as attacker:
        again = attacker.post("/api/auth/login", json={"username": "bob", "password": "wrong password!"})
        assert again.status_code == 429


def test_random_names_from_a_shared_address_do_not_lock_out_everyone(make_app, users, serve, web, loopback):
    """Behind a reverse proxy every client has the proxy's address."""
    url = serve(make_app())
    with loopback(url, "127.0.0.3") as proxy:
        assert (
            proxy.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD}).status_code
            == 200
        )
        for _ in range(21):
            name = "x" + uuid.uuid4().hex[:10]
            proxy.post("/api/auth/login", json={"username": name, "password": "wrong password!"})
        # The spraying address is refused for names that never signed in from it ...
        sprayed = proxy.post("/api/auth/login", json={"username": "xnew", "password": "wrong password!"})
        assert sprayed.status_code == 429
        # ... but a user who signed in through this address before still can.
        r = proxy.post("/api/auth/login", json={"username": "bob", "password": web.PASSWORD})
        assert r.status_code == 200, r.text
    # And from an address without failures, everyone can.
    with loopback(url, "127.0.0.1") as other:
        r = other.post("/api/auth/login", json={"username": "alice", "password": web.PASSWORD})
        assert r.status_code == 200, r.text


# --- The throttle's rules, with a fake clock ---------------------------------------------------------------


def test_throttle_counts_attempts_in_flight():
    from zebra_web.errors import RateLimitedError
    from zebra_web.ratelimit import LoginThrottle

    t = LoginThrottle(clock=lambda: 0.0)
    held = [t.begin("10.0.0.1", "bob") for _ in range(5)]  # as many at once as free failures
    with pytest.raises(RateLimitedError):
        t.begin("10.0.0.1", "Bob")  # names are case-insensitive
    held[0].cancel()  # a released slot (no password checked) counts nothing
    held[0] = t.begin("10.0.0.1", "bob")
    for a in held:
        a.failure()
    with pytest.raises(RateLimitedError):
        t.begin("10.0.0.1", "bob")
    t.begin("10.0.0.9", "bob").cancel()  # another address is not affected


def test_throttle_per_name_limit_spares_addresses_without_failures():
    from zebra_web.errors import RateLimitedError
    from zebra_web.ratelimit import LoginThrottle

    now = [0.0]
    t = LoginThrottle(free_failures=2, free_failures_per_user=4, base_delay_s=60, clock=lambda: now[0])
    for i in range(4):  # a distributed guesser: two failures from each of two addresses
        t.failure(f"10.0.1.{i // 2}", "carol")
    t.failure("10.0.2.1", "dave")  # an address that failed for someone else ...
    with pytest.raises(RateLimitedError):
        t.check("10.0.2.1", "carol")  # ... is held to carol's per-name limit
    t.check("10.0.3.1", "carol")  # an address with no failures never is
    t.success("10.0.2.1", "carol")  # nor is a pair that signed in before
    t.check("10.0.2.1", "carol")


def test_password_check_slots():
    from zebra_web.errors import ServerBusyError
    from zebra_web.ratelimit import PasswordCheckSlots

    slots = PasswordCheckSlots(slots=1, wait_s=0.05)

    async def scenario() -> None:
        async with slots.slot():
            with pytest.raises(ServerBusyError):
                async with slots.slot():
                    pass
        async with slots.slot():  # released
            pass

    asyncio.run(scenario())


def test_limits_come_from_the_settings(make_app) -> None:
    app = make_app(
        server={
            "login_free_failures": 3,
            "login_free_failures_per_user": 7,
            "login_free_failures_per_address": 9,
            "password_check_slots": 2,
            "password_check_wait_s": 1.5,
        }
    )
    ctx = app.state.zebra
    assert ctx.throttle._free == {"pair": 3, "user": 7, "ip": 9}
    assert ctx.password_checks.slots == 2 and ctx.password_checks.wait_s == 1.5
