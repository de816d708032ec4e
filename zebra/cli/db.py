"""CLI commands for db (being written)."""

from __future__ import annotations
