"""Fixtures of the web tests: an app on a temporary data directory with SQLite and a scripted agent."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap Argon2 parameters: the default ones cost ~0.1 s per hash on a shared CPU."""
    from argon2 import PasswordHasher

    from zebra_web import passwords

    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", lambda: fast)


@pytest.fixture
def web_settings(zebra_env: Path):
    from zebra.config import load_settings

    settings = load_settings(data_dir=zebra_env)
    # TestClient sends ``Host: testserver``; real servers keep the loopback-only default allow-list.
    hosts = [*settings.server.allowed_hosts, "testserver"]
    return settings.model_copy(update={"server": settings.server.model_copy(update={"allowed_hosts": hosts})})


@pytest.fixture
def scripted_agent(tmp_path: Path):
    from zebra_web.testing import ScriptedAgent

    return ScriptedAgent(thumb_dir=tmp_path / "agent-thumbs")


@pytest.fixture
def make_app(web_settings, scripted_agent) -> Callable[..., Any]:
    """Builds an app; keyword arguments go to ``create_app`` (settings overrides via ``server=...``)."""
    from zebra_web import create_app

    def build(**kwargs: Any):
        settings = web_settings
        server = kwargs.pop("server", None)
        if server:
            settings = settings.model_copy(update={"server": settings.server.model_copy(update=server)})
        kwargs.setdefault("agent_factory", lambda: scripted_agent)
        return create_app(settings, **kwargs)

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def users(app) -> dict[str, int]:
    from zebra_web.users import create_user

    store = app.state.zebra.store
    return {
        "alice": create_user(store, "alice", PASSWORD, is_admin=True),
        "bob": create_user(store, "bob", PASSWORD),
    }


def ask(client: Any, session_id: str, **extra: Any) -> list[Any]:
    """Asks "What is it?" in a session (``extra`` joins the JSON body); returns the parsed SSE events."""
    from zebra_web.sse import parse_sse

    with client.stream(
        "POST", f"/api/sessions/{session_id}/messages", json={"question": "What is it?", **extra}
    ) as resp:
        assert resp.status_code == 200, resp.read()
        return parse_sse("".join(resp.iter_text()))


def sign_in(app: Any, username: str, password: str = PASSWORD):
    """A new TestClient signed in by cookie, with the CSRF header preset."""
    from fastapi.testclient import TestClient

    c = TestClient(app)
    r = c.post("/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


@pytest.fixture
def alice(app, users):
    with sign_in(app, "alice") as c:
        yield c


@pytest.fixture
def bob(app, users):
    with sign_in(app, "bob") as c:
        yield c


def png_bytes(size: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (128 + 80 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 10, (size, size))).clip(0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def ct_small() -> Path:
    pydicom_data = pytest.importorskip("pydicom.data")
    return Path(pydicom_data.get_testdata_file("CT_small.dcm"))


def upload(c: Any, files: list[tuple[str, bytes]], **params: Any):
    return c.post("/api/studies", params=params, files=[("files", (name, data)) for name, data in files])


@pytest.fixture
def web():
    """Helpers for the test modules (conftest modules are not importable under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(sign_in=sign_in, png_bytes=png_bytes, upload=upload, ask=ask, PASSWORD=PASSWORD)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Starts an app under uvicorn on a free loopback port; returns its base URL. Servers stop at teardown."""
    import uvicorn

    servers: list[tuple[Any, threading.Thread]] = []

    def start(app: Any) -> str:
        port = _free_port()
        # As `zebra serve` runs it: uvicorn's own proxy-header handling off (the app decides whom to trust).
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, _thread in servers:
        server.should_exit = True
    for _server, thread in servers:
        thread.join(timeout=15)


@pytest.fixture
def loopback() -> Callable[..., Any]:
    """``loopback(url, address="127.0.0.1")``: an httpx client whose connections come from ``address``."""
    import httpx

    def make(url: str, address: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=url, transport=transport, timeout=30, **kwargs)

    return make
