"""``openai:URL``: any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp, TGI ...).

``openai:http://127.0.0.1:8000/v1?model=NAME``: the base URL of the API (``/chat/completions`` is appended);
``model`` defaults to the first id of ``GET /models`` (``"default"`` when that fails). A bearer token is sent
when ``ZEBRA_OPENAI_API_KEY`` or ``OPENAI_API_KEY`` is set.

The request asks for the output schema through ``response_format`` (``json_schema``); a server that rejects
it (HTTP 400/404/415/422/501) is asked again with a plain "reply with JSON only" instruction, and later
requests skip ``response_format``. The reply is validated and repaired by :mod:`agent.reasoners.llm`.
Unreachable servers, timeouts and HTTP errors raise :class:`agent.errors.ReasonerError`.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.errors import AgentConfigError, ReasonerError
from agent.prompting import OUTPUT_SCHEMA, read_prompt
from agent.reasoners import REASONERS
from agent.reasoners.base import ReasoningRequest, ReasoningResult
from agent.reasoners.llm import build_messages, interpret

log = logging.getLogger(__name__)

_REJECTS_SCHEMA = {400, 404, 415, 422, 501}


def parse_url(spec_arg: str) -> tuple[str, str | None]:
    """``(base URL without the model parameter, model or None)``.

    Raises:
        AgentConfigError: When the URL is not http(s).
    """
    parts = urlsplit(spec_arg.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AgentConfigError(
            f"openai:{spec_arg} is not an http(s) URL.",
            hint="Use e.g. openai:http://127.0.0.1:8000/v1?model=NAME.",
        )
    query = parse_qsl(parts.query)
    model = next((v for k, v in query if k == "model"), None)
    rest = urlencode([(k, v) for k, v in query if k != "model"])
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), rest, ""))
    return base, model


class OpenAIReasoner:
    """Chat-completions reasoner (module docstring).

    Args:
        url: The ``openai:`` argument.
        timeout_s: Seconds per request.
        max_new_tokens: ``max_tokens`` of the request.
    """

    def __init__(self, url: str, *, timeout_s: float = 60.0, max_new_tokens: int = 512) -> None:
        self.base, self._model = parse_url(url)
        self.timeout_s = float(timeout_s)
        self.max_new_tokens = int(max_new_tokens)
        self.name = f"openai:{self.base}"
        self._supports_schema = True
        self._lock = threading.Lock()
        self._client: Any = None

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            headers = {"Content-Type": "application/json"}
            key = os.environ.get("ZEBRA_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
        return self._client

    def _url(self, path: str) -> str:
        parts = urlsplit(self.base)
        return urlunsplit((parts.scheme, parts.netloc, f"{parts.path}/{path}", parts.query, ""))

    def _advice(self) -> str:
        return f"Check that the server at {self.base} is running and serves the OpenAI API, or use --reasoner builtin."

    def model(self) -> str:
        """The model name sent with requests."""
        if self._model is None:
            try:
                resp = self._http().get(self._url("models"))
                resp.raise_for_status()
                ids = [m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)]
                self._model = next((i for i in ids if i), "default")
            except Exception:  # listing models is optional in many servers
                log.debug("GET /models failed; using model 'default'", exc_info=True)
                self._model = "default"
        return self._model

    def _post(self, payload: dict[str, Any]) -> Any:
        import httpx

        try:
            return self._http().post(self._url("chat/completions"), json=payload)
        except httpx.TimeoutException as exc:
            raise ReasonerError(
                f"The reasoner server at {self.base} did not answer within {self.timeout_s:.0f} s.",
                hint="Raise reasoner_timeout_s, use a smaller model, or use --reasoner builtin.",
            ) from exc
        except httpx.HTTPError as exc:
            raise ReasonerError(
                f"Could not reach the reasoner server at {self.base}: {exc}.", hint=self._advice()
            ) from exc

    def complete(self, messages: list[dict[str, str]]) -> str:
        """Sends one chat request (with the schema when the server accepts it); returns the reply text.

        Raises:
            ReasonerError: Unreachable server, timeout, HTTP error or a reply without a message.
        """
        payload: dict[str, Any] = {
            "model": self.model(),
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_new_tokens,
        }
        with self._lock:
            use_schema = self._supports_schema
        if use_schema:
            schema_payload = {
                **payload,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "zebra_differential", "schema": OUTPUT_SCHEMA, "strict": True},
                },
            }
            resp = self._post(schema_payload)
            if resp.status_code in _REJECTS_SCHEMA:
                log.info(
                    "server rejected response_format (HTTP %s); retrying with a JSON instruction",
                    resp.status_code,
                )
                with self._lock:
                    self._supports_schema = False
                use_schema = False
        if not use_schema:
            fallback = [dict(m) for m in messages]
            fallback[-1]["content"] = (
                f"{fallback[-1]['content']}\n\n{read_prompt('json_fallback.txt').strip()}"
            )
            resp = self._post({**payload, "messages": fallback})
        if resp.status_code >= 400:
            raise ReasonerError(
                f"The reasoner server at {self.base} answered HTTP {resp.status_code}: {resp.text[:300]!r}.",
                hint=self._advice(),
            )
        try:
            return str(resp.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ReasonerError(
                f"The reasoner server at {self.base} sent a reply that is not a chat completion.",
                hint=self._advice(),
            ) from exc

    def reason(self, request: ReasoningRequest) -> ReasoningResult:
        """Asks the server for a differential and validates it."""
        text = self.complete(build_messages(request))
        return interpret(text, request, backend=self.name)


@REASONERS.register("openai", help="An OpenAI-compatible chat server: openai:http://host:8000/v1?model=NAME")
def _openai(arg: str, *, timeout_s: float = 60.0, max_new_tokens: int = 512, **_: object) -> OpenAIReasoner:
    if not arg:
        raise AgentConfigError(
            "openai: needs a URL.", hint="Use e.g. openai:http://127.0.0.1:8000/v1?model=NAME."
        )
    return OpenAIReasoner(arg, timeout_s=timeout_s, max_new_tokens=max_new_tokens)
