"""GET /api/kb: the knowledge base's build status, signed in only, without paths or process ids."""

from __future__ import annotations

import json
from pathlib import Path


def test_kb_status_needs_sign_in_and_reveals_no_paths(client, alice, zebra_env: Path) -> None:
    assert client.get("/api/kb").status_code == 401
    body = alice.get("/api/kb").json()
    assert body["state"] == "missing" and body["ready"] is False and "not built" in body["message"]
    (zebra_env / "kb-build.json").write_text(json.dumps({"state": "ready", "pid": 4242}))
    (zebra_env / "bundles" / "default").mkdir(parents=True)
    (zebra_env / "bundles" / "default" / "manifest.json").write_text("{}")
    body = alice.get("/api/kb").json()
    assert body["ready"] is True and body["message"] == "Knowledge base: ready."
    assert "pid" not in body and str(zebra_env) not in json.dumps(body)
