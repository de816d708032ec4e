"""CLI commands for index (being written)."""

from __future__ import annotations
