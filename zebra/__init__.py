"""Zebra's base package (the ground floor): settings, typed errors, registries, logging, atomic files.

Zebra is retrieval-augmented, agentic diagnosis of rare findings in medical images, for research use only: its
outputs are not a medical device and must not drive clinical decisions. Every other package imports this one
and it imports none of them; the floors above it are drawn in ``docs/architecture.md``. Importing it stays
cheap (no torch, no models).
"""

from __future__ import annotations

from zebra.config import Settings, get_settings
from zebra.errors import ZebraError
from zebra.registry import BackendSpec, Registry

__version__ = "0.1.0"

__all__ = ["BackendSpec", "Registry", "Settings", "ZebraError", "__version__", "get_settings"]
