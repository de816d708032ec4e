"""CLI commands for intake (being written)."""

from __future__ import annotations
