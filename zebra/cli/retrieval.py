"""CLI commands for retrieval (being written)."""

from __future__ import annotations
