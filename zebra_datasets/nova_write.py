"""Writing NOVA layout exactly: ``data/nova-v1.parquet`` (atomic), ``data/dataset.json`` and ``images/``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.records import NovaRecord
from zebra_datasets.schema import (
    BOX_LABELS_KEY,
    IMAGES_DIR,
    INFO_RELPATH,
    PARQUET_RELPATH,
    REQUIRED_META,
    nova_schema,
)

log = logging.getLogger(__name__)

#: Version of our converters and of the ``dataset.json`` layout.
CONVERTER_VERSION = "1.0"
#: How :func:`write_nova` places images: copy them, symlink to the source, or keep ``image_path`` as is.
ImageMode = Literal["copy", "link", "keep"]
IMAGE_MODES: tuple[str, ...] = ("copy", "link", "keep")


def write_nova(
    records: Iterable[NovaRecord],
    out_root: str | os.PathLike[str],
    *,
    images: ImageMode = "copy",
    name: str | None = None,
    source: str = "",
    licence: str = "",
    synthetic: bool | None = None,
    converter: str = "",
    extra_info: dict[str, Any] | None = None,
) -> Path:
    """Writes ``records`` as a NOVA-layout data set under ``out_root``.

    The parquet file has exactly NOVA's columns and types (see :func:`zebra_datasets.schema.nova_schema`);
    ``meta`` is a struct of strings whose fields are the union over all rows (null where a row lacks one).
    Per-box labels go to ``meta["box_labels"]`` (a JSON list parallel to ``bboxes``). The file is written
    to a temporary name and moved into place, so readers never see half a file.

    Args:
        records: The rows. Their images come from ``image_source`` (or ``image_bytes``).
        out_root: Data set root to create or update.
        images: ``"copy"`` (portable), ``"link"`` (symlink to the source, saves space) the images into
            ``out_root/images/<filename>``, or ``"keep"``: the images already sit at ``image_path`` under
            ``out_root``.
        name: Data set name for ``dataset.json`` (default: the folder name).
        source: Where the data came from (path or URL), for ``dataset.json``.
        licence: Licence / terms-of-use note for ``dataset.json``.
        synthetic: Whether the data are generated; default: whether any row says so in ``meta``.
        converter: Name of the converter that produced the rows.
        extra_info: More ``dataset.json`` fields (e.g. skip counts).

    Returns:
        The parquet file written.

    Raises:
        ConfigError: On an unknown ``images`` mode.
        DatasetError: When an image is missing or two different images share a file name.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if images not in IMAGE_MODES:
        raise ConfigError(f"Unknown image mode {images!r}.", hint=f"Use one of {', '.join(IMAGE_MODES)}.")
    out = Path(out_root).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    rows = [_place_image(r, out, images, placed) for r in records]

    meta_rows = [_meta_strings(r) for r in rows]
    extra_keys: list[str] = []
    for meta in meta_rows:
        extra_keys.extend(k for k in meta if k not in REQUIRED_META)
    schema = nova_schema(dict.fromkeys(extra_keys))
    meta_fields = [f.name for f in schema.field("meta").type]
    table = pa.Table.from_pydict(
        {
            "filename": [r.filename for r in rows],
            "image_path": [r.image_path for r in rows],
            "case_id": [r.case_id for r in rows],
            "scan_id": [r.scan_id for r in rows],
            "caption_text": [r.caption_text or "" for r in rows],
            "bboxes": [
                [
                    {
                        "x": float(b.x),
                        "y": float(b.y),
                        "width": float(b.width),
                        "height": float(b.height),
                        "source": b.source,
                    }
                    for b in r.bboxes
                ]
                for r in rows
            ],
            "meta": [{k: m.get(k) for k in meta_fields} for m in meta_rows],
        },
        schema=schema,
    )
    parquet = out / PARQUET_RELPATH
    parquet.parent.mkdir(parents=True, exist_ok=True)
    _atomic(parquet, lambda tmp: pq.write_table(table, tmp))

    is_synthetic = synthetic if synthetic is not None else any(r.is_synthetic for r in rows)
    info = {
        "name": name or out.name,
        "format": "nova-v1",
        "source": str(source),
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "n_rows": len(rows),
        "n_cases": len({r.case_id for r in rows}),
        "n_boxes": sum(len(r.bboxes) for r in rows),
        "synthetic": bool(is_synthetic),
        "licence": licence,
        "converter": converter,
        "converter_version": CONVERTER_VERSION,
        "images": images,
    }
    info.update(extra_info or {})
    payload = json.dumps(info, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    _atomic(out / INFO_RELPATH, lambda tmp: tmp.write_text(payload, encoding="utf-8"))
    log.info("wrote %d rows (%d cases) to %s", len(rows), info["n_cases"], parquet)
    return parquet


def _atomic(target: Path, write: Any) -> None:
    """Writes via ``write(tmp)`` to a temporary file beside ``target``, then renames it into place."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _meta_strings(record: NovaRecord) -> dict[str, str | None]:
    """``meta`` as strings (JSON for lists/dicts), with the box labels added when any box has one."""
    out: dict[str, str | None] = {}
    for key, value in record.meta.items():
        if value is None or isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, bool):
            out[str(key)] = "true" if value else "false"
        elif isinstance(value, list | dict | tuple):
            out[str(key)] = json.dumps(value, ensure_ascii=False)
        else:
            out[str(key)] = str(value)
    if any(b.label is not None for b in record.bboxes):
        out[BOX_LABELS_KEY] = json.dumps([b.label for b in record.bboxes], ensure_ascii=False)
    return out


def _place_image(record: NovaRecord, out: Path, mode: str, placed: dict[str, str]) -> NovaRecord:
    """Copies/links the image of ``record`` to ``out/images/<filename>``; returns the row pointing at it."""
    if mode == "keep":
        if not (out / record.image_path).is_file():
            log.warning("image %s of case %s is not under %s", record.image_path, record.case_id, out)
        return record
    if (
        not record.filename
        or "/" in record.filename
        or "\\" in record.filename
        or record.filename in {".", ".."}
    ):
        raise DatasetError(
            f"Case {record.case_id!r}: image file name {record.filename!r} is not a plain file name.",
            hint="Give every row a plain file name (no folders).",
        )
    rel = f"{IMAGES_DIR}/{record.filename}"
    src = record.image_source
    if src is not None and record.image_bytes and not Path(src).is_file():
        src = None  # embedded bytes win over a path that does not exist here
    key = (
        str(Path(src).resolve())
        if src is not None
        else "sha256:" + hashlib.sha256(record.image_bytes or b"").hexdigest()
    )
    if rel in placed:
        if placed[rel] != key:
            raise DatasetError(
                f"Two different images are both named {record.filename!r}.",
                hint="Give each image a unique file name (converters prefix the case id).",
            )
        return replace(record, image_path=rel)
    placed[rel] = key
    dst = out / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src is None and record.image_bytes is None:
        raise DatasetError(
            f"Case {record.case_id!r}: row {record.filename!r} has no image to write.",
            hint="Set image_source (a file) or image_bytes on the record, or use images='keep'.",
        )
    if src is not None:
        src = Path(src)
        if not src.is_file():
            raise DatasetError(
                f"Image {src} of case {record.case_id!r} does not exist.", hint="Check the source data set."
            )
        if dst.exists() and dst.resolve() == src.resolve():
            return replace(record, image_path=rel)  # already in place (re-writing a set in place)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if mode == "link":
            os.symlink(src.resolve(), dst)
        else:
            shutil.copyfile(src, dst)
    else:
        # Embedded bytes cannot be linked; write them out in either mode.
        dst.write_bytes(record.image_bytes or b"")
    return replace(record, image_path=rel)
