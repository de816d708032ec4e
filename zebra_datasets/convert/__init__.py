"""Converters from public data sets to NOVA layout, listed in :data:`CONVERTERS`.

Each converter is ``func(src, out, *, split, images, limit, progress, **options) -> ConvertReport``; importing
this package registers ``medpix``, ``yolo`` and ``synthetic``.
"""

from __future__ import annotations

from zebra_datasets.convert.base import CONVERTERS, ConverterInfo, ConvertReport
from zebra_datasets.convert.medpix import convert_medpix
from zebra_datasets.convert.synthetic import convert_synthetic, generate_synthetic
from zebra_datasets.convert.yolo import convert_yolo

__all__ = [
    "CONVERTERS",
    "ConvertReport",
    "ConverterInfo",
    "convert_medpix",
    "convert_synthetic",
    "convert_yolo",
    "generate_synthetic",
]
