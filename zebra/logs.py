"""Logging set-up with a last-line-of-defence filter against patient identifiers.

De-identification happens at intake; this filter only guards against an identifier slipping into a log
message through an exception text or a careless format string.
"""

from __future__ import annotations

import logging
import re

_PHI_PATTERNS = [
    # DICOM-style person names "DOE^JOHN".
    re.compile(r"\b[A-Za-z'\-]+\^[A-Za-z'\-^]+\b"),
]

_registered: set[str] = set()


def register_identifier(value: str) -> None:
    """Adds a value (a patient name or ID seen at intake) that must never reach a log line."""
    value = (value or "").strip()
    if len(value) >= 3:
        _registered.add(value)


class RedactingFilter(logging.Filter):
    """Replaces registered identifiers and DICOM person names by ``[REDACTED]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for value in _registered:
            if value in redacted:
                redacted = redacted.replace(value, "[REDACTED]")
        for pattern in _PHI_PATTERNS:
            redacted = pattern.sub("[REDACTED]", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str | int = "INFO") -> None:
    """Configures the root logger once, with the redacting filter on every handler."""
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
