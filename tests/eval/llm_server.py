"""A tiny OpenAI-compatible chat completions server on 127.0.0.1 for the LLM-judge tests."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def same_by_first_word(user: str) -> str:
    """Answers "Yes" when the reference and the prediction share their first word, else "No."."""
    ref = re.search(r"Reference diagnosis: (.*)", user).group(1).strip().lower()  # type: ignore[union-attr]
    pred = re.search(r"Predicted diagnosis: (.*)", user).group(1).strip().lower()  # type: ignore[union-attr]
    return "Yes." if re.findall(r"[a-z]+", ref)[:1] == re.findall(r"[a-z]+", pred)[:1] else "No."


@contextmanager
def chat_server(
    answer: Callable[[str], str] = same_by_first_word, status: int = 200
) -> Iterator[dict[str, Any]]:
    """Runs the server in a thread; yields ``{"url", "requests"}`` (each request body is recorded)."""
    state: dict[str, Any] = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append({"path": self.path, "body": body})
            if status != 200:
                self.send_response(status)
                self.end_headers()
                return
            user = body["messages"][-1]["content"]
            reply = {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer(user)},
                        "finish_reason": "stop",
                    }
                ],
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
