"""Masking secrets in text that goes to the log (never to users: they get generic messages)."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_KEY_VALUE = re.compile(
    r"(?i)\b(api[_-]?key|token|password|secret|authorization)(\s*[=:]\s*)(bearer\s+)?[^\s,;&\"']+"
)
#: Longest detail kept in a log line.
MAX_LOGGED_CHARS = 500


def mask_secrets(text: str) -> str:
    """``text`` with URL credentials and ``key=value`` secrets replaced by ``***``, cut to a sane length."""
    text = _URL_CREDENTIALS.sub(r"\1***@", str(text))
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return text[:MAX_LOGGED_CHARS]
