"""Issue 15, problem 1: the body limit counts the bytes received, so a chunked body cannot skip it.

Runs the app under uvicorn on loopback and streams real chunked bodies to it (fixtures ``serve`` and
``loopback`` in conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

MiB = 1024 * 1024


def _chunks(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A body of ``total`` bytes sent with ``Transfer-Encoding: chunked`` (no Content-Length)."""
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        sent += n
        yield b" " * n


# --- 1. Body limit on the bytes received -------------------------------------------------------------


def test_chunked_body_to_login_gets_413(make_app, users, serve, loopback):
    url = serve(make_app())
    with loopback(url) as c:
        r = c.post(
            "/api/auth/login",
            content=_chunks(4 * MiB),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 413, r.text
        assert r.json()["error"] and r.json()["hint"]
    # The server still answers afterwards, and a small body is fine.
    with loopback(url) as c:
        ok = c.post("/api/auth/login", json={"username": "bob", "password": "wrong password!"})
        assert ok.status_code == 401


def test_chunked_body_to_protected_route_gets_413(make_app, users, serve, web, loopback):
    url = serve(make_app())
    with loopback(url) as c:
        token = c.post(
            "/api/auth/login", json={"username": "bob", "password": web.PASSWORD, "bearer": True}
        ).json()["token"]
        r = c.post(
            "/api/sessions",
            content=_chunks(3 * MiB),
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        assert r.status_code == 413, r.text
        # Signed out, a chunked body is refused before authentication as well (no read of 2 MiB for a 401).
        anonymous = c.post(
            "/api/sessions", content=_chunks(2 * MiB), headers={"content-type": "application/json"}
        )
        assert anonymous.status_code in (401, 413)


def test_chunked_upload_keeps_its_own_larger_limit(make_app, users, serve, web, loopback):
    url = serve(make_app(server={"max_upload_bytes": 3 * MiB}))
    boundary = "zebra-test-boundary"

    def multipart(size: int) -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        yield from _chunks(size)
        yield f"\r\n--{boundary}--\r\n".encode()

    with loopback(url) as c:
        token = c.post(
            "/api/auth/login", json={"username": "bob", "password": web.PASSWORD, "bearer": True}
        ).json()["token"]
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": f"multipart/form-data; boundary={boundary}",
        }
        # 2 MiB: over the 1 MiB limit of other routes but under the upload limit, so it is received and
        # parsed (and refused as not an image, which is not a size error).
        small = c.post("/api/studies", content=multipart(2 * MiB), headers=headers)
        assert small.status_code not in (413, 500), small.text
        big = c.post("/api/studies", content=multipart(5 * MiB), headers=headers)
        assert big.status_code == 413, big.text
