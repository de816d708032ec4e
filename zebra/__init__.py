"""Zebra: retrieval-augmented, agentic diagnosis of rare findings in medical images.

Research use only: Zebra's outputs are not a medical device and must not drive clinical decisions.

The flat public API is re-exported lazily so that ``import zebra`` stays cheap (no torch, no models).
"""

from __future__ import annotations

from zebra.config import Settings, get_settings
from zebra.errors import ZebraError
from zebra.registry import BackendSpec, Registry

__version__ = "0.1.0"

__all__ = ["BackendSpec", "Registry", "Settings", "ZebraError", "__version__", "get_settings"]
