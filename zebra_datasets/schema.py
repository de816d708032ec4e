"""The NOVA file layout: paths, column names and the Arrow types we write.

NOVA (Bercea et al., 2025, ``c-i-ber/Nova`` on Hugging Face) ships ``data/nova-v1.parquet`` beside its
images. One row per image with the columns below; ``bboxes`` is a list of ``{x, y, width, height, source}``
structs (pixels, x/y = top-left corner; ``source == "gold"`` marks the reference boxes, other values name
individual raters) and ``meta`` a struct with at least ``clinical_history`` and ``final_diagnosis``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

#: The parquet file, relative to the data set root.
PARQUET_RELPATH = "data/nova-v1.parquet"
#: Our provenance file, beside the parquet file.
INFO_RELPATH = "data/dataset.json"
#: Where converters put images and masks, relative to the root.
IMAGES_DIR = "images"
MASKS_DIR = "masks"

#: NOVA's columns, in NOVA's order.
COLUMNS: tuple[str, ...] = ("filename", "image_path", "case_id", "scan_id", "caption_text", "bboxes", "meta")
#: Meta fields every row has (null when unknown).
REQUIRED_META: tuple[str, ...] = ("clinical_history", "final_diagnosis")
#: Meta field holding the per-box labels as a JSON list parallel to ``bboxes`` (NOVA's box struct has none).
BOX_LABELS_KEY = "box_labels"
#: Source value of reference boxes.
GOLD = "gold"

BBOX_TYPE = pa.struct(
    [
        pa.field("x", pa.float64()),
        pa.field("y", pa.float64()),
        pa.field("width", pa.float64()),
        pa.field("height", pa.float64()),
        pa.field("source", pa.string()),
    ]
)


def meta_type(extra_keys: Iterable[str] = ()) -> pa.StructType:
    """The ``meta`` struct: the required fields first, then ``extra_keys`` in the given order; all strings."""
    keys = list(REQUIRED_META) + [k for k in dict.fromkeys(extra_keys) if k not in REQUIRED_META]
    return pa.struct([pa.field(k, pa.string()) for k in keys])


def nova_schema(extra_meta_keys: Iterable[str] = ()) -> pa.Schema:
    """The exact schema :func:`zebra_datasets.nova.write_nova` writes."""
    return pa.schema(
        [
            pa.field("filename", pa.string()),
            pa.field("image_path", pa.string()),
            pa.field("case_id", pa.string()),
            pa.field("scan_id", pa.string()),
            pa.field("caption_text", pa.string()),
            pa.field("bboxes", pa.list_(BBOX_TYPE)),
            pa.field("meta", meta_type(extra_meta_keys)),
        ]
    )
