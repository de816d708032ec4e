"""Data sets in NOVA layout, the common benchmark format, and converters into it.

Heavy pieces (pyarrow, the converters) are imported on first use of the names below.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CONVERTERS",
    "BBox",
    "ConvertReport",
    "NovaDataset",
    "NovaRecord",
    "generate_synthetic",
    "read_nova",
    "write_nova",
]

_HOMES = {
    "BBox": "zebra_datasets.records",
    "NovaRecord": "zebra_datasets.records",
    "NovaDataset": "zebra_datasets.nova",
    "read_nova": "zebra_datasets.nova",
    "write_nova": "zebra_datasets.nova_write",
    "CONVERTERS": "zebra_datasets.convert",
    "ConvertReport": "zebra_datasets.convert",
    "generate_synthetic": "zebra_datasets.convert",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'zebra_datasets' has no attribute {name!r}")
