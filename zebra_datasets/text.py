"""Cleaning of free text taken from teaching files: HTML entities and tags, whitespace noise, "N/A"."""

from __future__ import annotations

import html
import re

# Only real HTML tag names, so that "(<5mm)" or "BP <140" survive untouched.
_TAG_NAMES = (
    "a|b|i|u|p|br|hr|li|ul|ol|em|strong|div|span|sup|sub|font|table|tr|td|th|tbody|thead|"
    "h[1-6]|pre|blockquote|center|small|big|img"
)
_BLOCK_TAG = re.compile(r"<\s*/?\s*(?:br|p|li|ul|ol|div|tr|h[1-6]|hr|blockquote|table)\b[^<>]*>", re.I)
_INLINE_TAG = re.compile(rf"<\s*/?\s*(?:{_TAG_NAMES})\b[^<>]*>", re.I)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_EMPTY_MARKERS = {"", "n/a", "na", "none", "null", "-", "unknown", "not available"}


def clean_text(value: object) -> str | None:
    """Returns ``value`` as tidy plain text, or ``None`` when it is empty or a "N/A" marker.

    Entities are decoded (twice, for doubly-escaped text such as ``&amp;#39;``), HTML tags dropped (block
    tags become line breaks), runs of spaces and tabs collapsed, each line stripped and more than one
    blank line reduced to one.

    Args:
        value: Any value; ``None`` stays ``None``, others are converted with ``str``.
    """
    if value is None:
        return None
    text = str(value)
    for _ in range(2):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BLOCK_TAG.sub("\n", text)
    text = _INLINE_TAG.sub(" ", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()
    if text.lower() in _EMPTY_MARKERS:
        return None
    return text
