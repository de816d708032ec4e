"""Server-Sent Events framing."""

from __future__ import annotations

import json
from typing import Any


def sse_event(event: str, data: Any) -> bytes:
    """One SSE event (``event:`` line, one ``data:`` line of JSON, blank line)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def sse_comment(text: str = "ping") -> bytes:
    """A comment line; keeps idle connections open through proxies."""
    return f": {text}\n\n".encode()


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Parses an SSE stream into ``(event, data)`` pairs (data JSON-decoded); comments are skipped."""
    events: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events
