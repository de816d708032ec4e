"""CLI commands for datasets (being written)."""

from __future__ import annotations
