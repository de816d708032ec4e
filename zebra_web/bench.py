"""``zebra bench chat``: simulated radiologists against a server on this machine; prints JSON.

Each simulated user signs in (bearer token), uploads a small study (a PNG, or pydicom's ``CT_small.dcm`` for
every other user when ``pydicom-data`` is installed), opens a session and asks questions back to back until
the time is up. Latency is measured from sending a question to the ``final`` event of its answer stream.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from zebra.config import Settings
from zebra.errors import ConfigError
from zebra_web.server import is_loopback
from zebra_web.sse import parse_sse

log = logging.getLogger(__name__)

QUESTIONS = (
    "What is the most likely diagnosis?",
    "What are the main differential diagnoses?",
    "Where is the abnormality?",
    "Which rare conditions should I consider?",
)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "max": round(float(arr.max()), 4),
        "mean": round(float(arr.mean()), 4),
    }


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128]
    img = 100 + 60 * np.exp(-(((yy - 60) ** 2) + ((xx - 70) ** 2)) / 300.0) + rng.normal(0, 8, (128, 128))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _study_file(i: int) -> tuple[str, bytes]:
    if i % 2:
        try:
            from pydicom.data import get_testdata_file

            path = get_testdata_file("CT_small.dcm")
            if path:
                return "study.dcm", Path(path).read_bytes()
        except Exception:  # pydicom-data missing: PNG for everyone
            pass
    return "study.png", _png(i)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server(settings: Settings, *, test_agent: bool, admin: tuple[str, str]):
    """Starts ``python -m zebra_web`` on a free loopback port with a temporary data directory.

    The knowledge bundle stays the configured one; users, uploads and the database are temporary.
    """
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="zebra-bench-") as tmp:
        env = dict(os.environ)
        env.update(
            ZEBRA_DATA_DIR=tmp,
            ZEBRA_BUNDLE=str(settings.bundle_dir),
            ZEBRA_ADMIN_USER=admin[0],
            ZEBRA_ADMIN_PASSWORD=admin[1],
            ZEBRA_LOG_LEVEL="WARNING",
        )
        env.pop("ZEBRA_STORE__URL", None)
        cmd = [
            sys.executable,
            "-m",
            "zebra_web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            # a benchmark measures the server; it must never start building a knowledge base behind it
            "--no-build-kb",
        ]
        if test_agent:
            cmd.append("--test-agent")
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as server_log:
            proc = subprocess.Popen(cmd, env=env, stdout=server_log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc, log_path)
            yield url, log_path
        except BaseException:
            tail = log_path.read_text(errors="replace")[-3000:]
            if tail.strip():
                log.warning("bench server log (tail):\n%s", tail)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log_path.read_text(errors="replace")[-2000:]
            raise ConfigError(f"The bench server exited early: {err}", hint="Run zebra serve to see why.")
        try:
            if httpx.get(url + "/", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ConfigError("The bench server did not start in time.", hint="Run zebra serve to see why.")


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.first_text: list[float] = []
        self.uploads: list[float] = []

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _ask(client: Any, sid: str, question: str, stats: _Stats, *, record: bool = True) -> None:
    start = time.perf_counter()
    first: float | None = None
    body = ""
    stats.requests += 1
    async with client.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"question": question, "image_index": 0}
    ) as resp:
        if resp.status_code != 200:
            stats.error(f"ask:{resp.status_code}")
            await resp.aread()
            return
        async for chunk in resp.aiter_text():
            if first is None and "event: delta" in chunk:
                first = time.perf_counter() - start
            body += chunk
    events = parse_sse(body)
    if not events or events[-1][0] != "final":
        stats.error("ask:" + (events[-1][0] if events else "empty"))
        return
    if record:
        stats.latencies.append(time.perf_counter() - start)
        if first is not None:
            stats.first_text.append(first)


async def _user(url: str, name: str, password: str, index: int, deadline: float, stats: _Stats) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=120.0) as client:
        stats.requests += 1
        r = await client.post(
            "/api/auth/login", json={"username": name, "password": password, "bearer": True}
        )
        for _ in range(60):
            # Many users signing in at once from one address meet the sign-in limits (attempts in flight per
            # address, password checks at once): wait as told and try again, like a patient client.
            if r.status_code not in (429, 503):
                break
            await asyncio.sleep(float(r.headers.get("retry-after", "1")) * (0.5 + random.random()))
            r = await client.post(
                "/api/auth/login", json={"username": name, "password": password, "bearer": True}
            )
        if r.status_code != 200:
            stats.error(f"login:{r.status_code}")
            return
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        fname, data = _study_file(index)
        t0 = time.perf_counter()
        stats.requests += 1
        r = await client.post("/api/studies", files=[("files", (fname, data))])
        if r.status_code != 201:
            stats.error(f"upload:{r.status_code}")
            return
        stats.uploads.append(time.perf_counter() - t0)
        stats.requests += 1
        r = await client.post("/api/sessions", json={"study_id": r.json()["id"]})
        if r.status_code != 201:
            stats.error(f"session:{r.status_code}")
            return
        sid = r.json()["id"]
        turn = 0
        # Every user asks at least once, even when signing in and uploading outlast the deadline.
        while turn == 0 or time.monotonic() < deadline:
            try:
                await _ask(client, sid, QUESTIONS[(index + turn) % len(QUESTIONS)], stats)
            except httpx.HTTPError as exc:
                stats.error(f"ask:{type(exc).__name__}")
            turn += 1


async def _run(url: str, admin: tuple[str, str], users: int, seconds: float) -> dict[str, Any]:
    import httpx

    stats = _Stats()
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        r = await client.post(
            "/api/auth/login", json={"username": admin[0], "password": admin[1], "bearer": True}
        )
        if r.status_code != 200:
            raise ConfigError(
                f"The bench could not sign in as {admin[0]!r} ({r.status_code}).",
                hint="With --url, set ZEBRA_ADMIN_USER and ZEBRA_ADMIN_PASSWORD to an administrator of that server.",
            )
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        password = secrets.token_urlsafe(16)
        tag = secrets.token_hex(3)
        names = [f"bench-{tag}-{i}" for i in range(users)]
        for name in names:
            r = await client.post("/api/users", json={"username": name, "password": password})
            if r.status_code != 201:
                raise ConfigError(
                    f"Could not create bench user ({r.status_code}): {r.text}", hint="Check the server log."
                )
        # Warm-up: the first question loads the agent's models; it is not timed.
        fname, data = _study_file(0)
        r = await client.post("/api/studies", files=[("files", (fname, data))])
        r.raise_for_status()
        sid = (await client.post("/api/sessions", json={"study_id": r.json()["id"]})).json()["id"]
        warm = time.perf_counter()
        await _ask(client, sid, QUESTIONS[0], _Stats(), record=False)
        warmup_s = time.perf_counter() - warm
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(_user(url, n, password, i, deadline, stats) for i, n in enumerate(names)))
    elapsed = time.monotonic() - start
    return {
        "users": users,
        "seconds": round(elapsed, 2),
        "requests": stats.requests,
        "questions": len(stats.latencies),
        "errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "answers_per_s": round(len(stats.latencies) / elapsed, 3) if elapsed else None,
        "answer_latency_s": _percentiles(stats.latencies),
        "first_text_s": _percentiles(stats.first_text),
        "upload_latency_s": _percentiles(stats.uploads),
        "warmup_s": round(warmup_s, 3),
    }


def bench_chat(
    settings: Settings,
    *,
    users: int = 20,
    seconds: float = 60.0,
    url: str | None = None,
    test_agent: bool = False,
    admin: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Runs the chat benchmark and returns its JSON-ready result.

    Args:
        settings: Zebra's settings (bundle and models of the server started here).
        users: Simulated concurrent users.
        seconds: How long they ask questions.
        url: An already running server on this machine; ``None`` starts one on a free loopback port.
        test_agent: The started server answers with the scripted test agent (measures the web stack alone).
        admin: Administrator credentials for ``url`` (users are created through ``POST /api/users``).

    Raises:
        ConfigError: When ``url`` is not on this machine, or credentials are missing or wrong.
    """
    # One INFO line per request from the client library would drown the JSON.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if url is not None:
        host = urlparse(url).hostname or ""
        if not is_loopback(host):
            raise ConfigError(
                "bench chat only runs against this machine.", hint="Use --url http://127.0.0.1:PORT."
            )
        if admin is None:
            raise ConfigError(
                "bench chat --url needs an administrator account to create its users.",
                hint="Set ZEBRA_ADMIN_USER and ZEBRA_ADMIN_PASSWORD.",
            )
        result = asyncio.run(_run(url.rstrip("/"), admin, users, seconds))
        result["server"] = url
    else:
        admin = ("bench-admin", secrets.token_urlsafe(16))
        with local_server(settings, test_agent=test_agent, admin=admin) as (started, log_path):
            result = asyncio.run(_run(started, admin, users, seconds))
            if result["errors"]:
                # Only the server's own log lines: it logs no request bodies, file names or patient data.
                result["server_log_tail"] = log_path.read_text(errors="replace")[-4000:].splitlines()[-40:]
        result["server"] = "started on loopback"
    result["agent"] = "test" if test_agent and url is None else "configured"
    return result


def format_result(result: dict[str, Any]) -> str:
    """The result as indented JSON."""
    return json.dumps(result, indent=2)
