"""Issue 15, problem 4: forwarded headers only from trusted proxies; Secure ``__Host-`` cookies and HSTS over
TLS; and the Host allow-list.

The proxy tests run uvicorn on loopback with real client addresses (127.0.0.2 plays the proxy).
"""

from __future__ import annotations

import pytest

WRONG = "wrong password!"


def _login(c, username: str, password: str, **headers: str):
    return c.post("/api/auth/login", json={"username": username, "password": password}, headers=headers)


def _set_cookies(response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_trusted_proxies_are_empty_by_default(zebra_env):
    from zebra.config import load_settings

    server = load_settings(data_dir=zebra_env).server
    assert server.trusted_proxies == []
    assert set(server.allowed_hosts) == {"localhost", "127.0.0.1", "::1"}


def test_cookies_are_secure_behind_a_trusted_tls_proxy(make_app, users, serve, loopback, web):
    url = serve(make_app(server={"trusted_proxies": ["127.0.0.2"]}))
    with loopback(url, "127.0.0.2") as proxy:
        r = _login(
            proxy, "bob", web.PASSWORD, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"}
        )
        assert r.status_code == 200, r.text
        cookies = _set_cookies(r)
        session = next(c for c in cookies if c.startswith("__Host-zebra_session="))
        assert "Secure" in session and "HttpOnly" in session and "Path=/" in session
        assert "Domain" not in session
        assert any(c.startswith("__Host-zebra_csrf=") and "Secure" in c for c in cookies)
        assert r.headers["strict-transport-security"].startswith("max-age=31536000")
        token = session.split(";", 1)[0].split("=", 1)[1]
        tls = {"X-Forwarded-Proto": "https"}
        me = proxy.get("/api/me", headers={**tls, "Cookie": f"__Host-zebra_session={token}"})
        assert me.status_code == 200 and me.json()["username"] == "bob"
        # Over TLS a plain-named cookie (which HTTP or a sibling domain could have planted) is not accepted.
        planted = proxy.get("/api/me", headers={**tls, "Cookie": f"zebra_session={token}"})
        assert planted.status_code == 401


def test_forwarded_headers_from_anyone_else_are_ignored(make_app, users, serve, loopback, web):
    url = serve(make_app(server={"trusted_proxies": ["127.0.0.2"]}))
    with loopback(url, "127.0.0.1") as client:
        r = _login(client, "bob", web.PASSWORD, **{"X-Forwarded-Proto": "https"})
        assert r.status_code == 200
        assert all("Secure" not in c and not c.startswith("__Host-") for c in _set_cookies(r))
        assert "strict-transport-security" not in r.headers
        # A made-up X-Forwarded-For per attempt does not make each attempt a new address.
        statuses = [
            _login(client, "alice", WRONG, **{"X-Forwarded-For": f"10.9.0.{i}"}).status_code for i in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses


def test_a_trusted_proxy_forwards_each_clients_address(make_app, users, serve, loopback, web):
    # Before issue 15 every client behind the proxy was the proxy's address: one client's wrong passwords
    # held the name back for everyone behind it.
    url = serve(make_app(server={"trusted_proxies": ["127.0.0.0/30"]}))
    with loopback(url, "127.0.0.2") as proxy:
        for _ in range(6):
            assert _login(proxy, "bob", WRONG, **{"X-Forwarded-For": "10.0.0.1"}).status_code in (401, 429)
        assert _login(proxy, "bob", WRONG, **{"X-Forwarded-For": "10.0.0.1"}).status_code == 429
        # The rightmost untrusted hop is the client; what a client prepends is not believed.
        r = _login(proxy, "bob", web.PASSWORD, **{"X-Forwarded-For": "10.0.0.1, 10.0.0.2, 127.0.0.1"})
        assert r.status_code == 200, r.text


def test_direct_tls_sets_secure_cookies_and_hsts(make_app, users, web):
    from fastapi.testclient import TestClient

    app = make_app()
    with TestClient(app, base_url="https://testserver") as c:
        r = _login(c, "bob", web.PASSWORD)
        assert r.status_code == 200
        assert any(h.startswith("__Host-zebra_session=") and "Secure" in h for h in _set_cookies(r))
        assert "max-age=" in r.headers["strict-transport-security"]
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        assert c.get("/api/me").status_code == 200  # the __Host- cookie authenticates over TLS
        out = c.post("/api/auth/logout")
        assert out.status_code == 204
        cleared = [h for h in _set_cookies(out) if h.startswith("__Host-zebra_session=")]
        assert cleared and "Secure" in cleared[0] and 'zebra_session=""' in cleared[0]


def test_unknown_host_gets_400(make_app, users, web):
    from fastapi.testclient import TestClient

    app = make_app()
    with TestClient(app, base_url="http://evil.example") as c:
        r = _login(c, "bob", web.PASSWORD)
        assert r.status_code == 400 and r.json()["error"] == "Unknown host."
        assert c.get("/").status_code == 400
    with TestClient(app, base_url="http://localhost:8000") as c:
        assert c.get("/").status_code == 200


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("LOCALHOST", True),
        ("[::1]:8000", True),
        ("attacker.example", False),
        ("", False),
    ],
)
def test_host_allow_list(header, allowed):
    from zebra_web.proxy import HostAllowList

    assert HostAllowList.of(["localhost", "127.0.0.1", "::1"]).allows(header) is allowed
    assert HostAllowList.of(["*"]).allows(header) is True


def test_bad_trusted_proxy_setting_is_a_config_error():
    from zebra.errors import ConfigError
    from zebra_web.proxy import ForwardedResolver

    with pytest.raises(ConfigError, match="trusted_proxies"):
        ForwardedResolver.from_settings(["not-an-address"])
