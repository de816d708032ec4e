"""NOVA layout, the common benchmark format: reading (liberal) and the :class:`NovaDataset` view.

The reader accepts the real ``nova-v1.parquet`` unchanged and the variants seen in the wild: the image as a
relative path string or as a Hugging Face ``Image`` struct ``{bytes, path}`` (in ``image_path`` or in an
``image`` column), ``meta`` and ``bboxes`` as structs or JSON strings, boxes as a list of structs or as a
struct of lists, ids stored as integers, and missing optional columns. Writing is exact; see
:func:`write_nova`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from zebra.errors import DatasetError
from zebra_datasets.errors import MissingColumnsError
from zebra_datasets.nova_write import write_nova
from zebra_datasets.records import BBox, NovaRecord
from zebra_datasets.schema import BOX_LABELS_KEY, GOLD, INFO_RELPATH, PARQUET_RELPATH, REQUIRED_META

__all__ = ["BBox", "NovaDataset", "NovaRecord", "read_nova", "write_nova"]

log = logging.getLogger(__name__)

#: Columns without which a row cannot be used (an image reference is required too: ``image_path`` or
#: ``image``).
REQUIRED_COLUMNS: tuple[str, ...] = ("case_id",)
_IMAGE_COLUMNS = ("image_path", "image")


class NovaDataset:
    """A NOVA-layout data set in memory: its rows plus where their images are.

    Args:
        root: The data set root (the folder holding ``data/nova-v1.parquet``); relative image paths are
            resolved against it.
        records: The rows, in file order.
        info: The content of ``data/dataset.json`` when present.
        parquet_path: The file the rows came from, if any.
    """

    def __init__(
        self,
        root: Path,
        records: list[NovaRecord],
        *,
        info: dict[str, Any] | None = None,
        parquet_path: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.records = list(records)
        self.info = dict(info or {})
        self.parquet_path = parquet_path

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[NovaRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> NovaRecord:
        return self.records[index]

    def __repr__(self) -> str:
        return f"NovaDataset(root={str(self.root)!r}, rows={len(self)}, cases={len(self.case_ids)})"

    @property
    def case_ids(self) -> list[str]:
        """Distinct case ids in order of first appearance."""
        return list(dict.fromkeys(r.case_id for r in self.records))

    def by_case(self) -> dict[str, list[NovaRecord]]:
        """Case id to its rows, both in file order."""
        cases: dict[str, list[NovaRecord]] = {}
        for record in self.records:
            cases.setdefault(record.case_id, []).append(record)
        return cases

    @staticmethod
    def gold_boxes(record: NovaRecord) -> list[BBox]:
        """The reference (``source == "gold"``) boxes of ``record``."""
        return record.gold_boxes

    @property
    def is_synthetic(self) -> bool:
        """Whether ``dataset.json`` marks the set synthetic, or any row's ``meta["synthetic"]`` does."""
        if bool(self.info.get("synthetic")):
            return True
        return any(r.is_synthetic for r in self.records)

    def resolve_image(self, record: NovaRecord) -> Path:
        """The image file of ``record``.

        Relative paths are taken against the root (then ``root/data``, ``root/images``, ``root/test`` with the
        bare file name, where NOVA mirrors have put them). Images embedded as bytes are written once to a
        temporary cache so that a path can be returned.

        Raises:
            DatasetError: When the path escapes the root or no image can be found.
        """
        for candidate in self._candidates(record):
            if candidate.is_file():
                return candidate
        if record.image_bytes:
            return self._materialise(record)
        raise self._not_found(record)

    def load_image(self, record: NovaRecord) -> Image.Image:
        """Decodes the image of ``record`` (from its file, or from the embedded bytes).

        Raises:
            DatasetError: When the image is missing or cannot be decoded.
        """
        path = next((c for c in self._candidates(record) if c.is_file()), None)
        if path is None and not record.image_bytes:
            raise self._not_found(record)
        try:
            if path is not None:
                with Image.open(path) as img:
                    img.load()
                    return img.copy()
            with Image.open(io.BytesIO(record.image_bytes or b"")) as img:
                img.load()
                return img.copy()
        except (OSError, Image.DecompressionBombError) as exc:
            raise DatasetError(
                f"Image {record.image_path!r} of case {record.case_id!r} cannot be decoded: {exc}.",
                hint="Replace the file with an intact copy.",
            ) from exc

    def _not_found(self, record: NovaRecord) -> DatasetError:
        return DatasetError(
            f"Image {record.image_path or record.filename!r} of case {record.case_id!r} not found under "
            f"{self.root}.",
            hint="Download or copy the data set's images next to data/nova-v1.parquet, keeping image_path.",
        )

    def _candidates(self, record: NovaRecord) -> list[Path]:
        rel = (record.image_path or "").replace("\\", "/")
        if not rel:
            names = [record.filename] if record.filename else []
            return [self.root / d / n for d in ("images", "test", "data") for n in names]
        path = Path(rel)
        if path.is_absolute():
            return [path]
        _check_inside(self.root, rel)
        out = [self.root / rel, self.root / "data" / rel]
        name = record.filename or path.name
        out += [self.root / d / name for d in ("images", "test")]
        return out

    def _materialise(self, record: NovaRecord) -> Path:
        assert record.image_bytes is not None
        digest = hashlib.sha256(record.image_bytes).hexdigest()[:24]
        suffix = Path(record.filename or record.image_path or "").suffix or ".png"
        cache = Path(tempfile.gettempdir()) / "zebra-nova-images"
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"{digest}{suffix}"
        if not target.is_file():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(record.image_bytes)
            os.replace(tmp, target)
        return target


def _check_inside(root: Path, rel: str) -> None:
    """Rejects relative image paths that climb out of the data set root (``../../etc/passwd``)."""
    normal = os.path.normpath(rel)
    if normal == ".." or normal.startswith(".." + os.sep) or os.path.isabs(normal):
        raise DatasetError(
            f"Image path {rel!r} points outside the data set root {root}.",
            hint="image_path must be relative to the data set root and stay inside it.",
        )


def locate_parquet(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Returns ``(root, parquet_file)`` for a data set root or a parquet file.

    Raises:
        DatasetError: When neither exists.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        parquet = path / PARQUET_RELPATH
        if not parquet.is_file():
            # A bare folder holding the parquet file directly, or data/ itself.
            alt = path / Path(PARQUET_RELPATH).name
            if alt.is_file():
                parquet = alt
            else:
                raise DatasetError(
                    f"No NOVA file at {parquet}.",
                    hint="Pass the data set root that contains data/nova-v1.parquet, or the parquet file itself.",
                )
    elif path.is_file():
        parquet = path
    else:
        raise DatasetError(
            f"{path} does not exist.", hint="Pass a NOVA data set root or its data/nova-v1.parquet file."
        )
    root = parquet.parent.parent if parquet.parent.name == "data" else parquet.parent
    return root, parquet


def read_nova(path: str | os.PathLike[str]) -> NovaDataset:
    """Reads a NOVA-layout data set.

    Args:
        path: The data set root (containing ``data/nova-v1.parquet``) or the parquet file itself.

    Returns:
        The rows with their root, and ``data/dataset.json`` as ``info`` when present.

    Raises:
        DatasetError: When the file is missing, unreadable or malformed.
        MissingColumnsError: When required columns are absent; the message names them.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, parquet = locate_parquet(path)
    try:
        table = pq.read_table(parquet)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(
            f"{parquet} is not a readable parquet file: {exc}.", hint="Re-download or re-create it."
        ) from exc
    names = set(table.column_names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if not names & set(_IMAGE_COLUMNS):
        missing.append("image_path")
    if missing:
        raise MissingColumnsError(str(parquet), missing)
    records = [_row_to_record(row, i, parquet) for i, row in enumerate(table.to_pylist())]
    for record in records:
        record.image_source = _source_path(root, record.image_path)
    info: dict[str, Any] = {}
    info_path = root / INFO_RELPATH
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", info_path, exc)
    log.debug("read %d NOVA rows from %s", len(records), parquet)
    return NovaDataset(root, records, info=info, parquet_path=parquet)


def _source_path(root: Path, image_path: str) -> Path | None:
    """Where ``write_nova`` would copy the image from; ``None`` for paths that escape the root."""
    if not image_path:
        return None
    path = Path(image_path.replace("\\", "/"))
    if path.is_absolute():
        return path
    try:
        _check_inside(root, image_path)
    except DatasetError:
        return None
    return root / path


def _row_to_record(row: dict[str, Any], index: int, parquet: Path) -> NovaRecord:
    where = f"{parquet} row {index}"
    image_path, image_bytes = _image_ref(row.get("image_path"))
    if not image_path and not image_bytes and "image" in row:
        image_path, image_bytes = _image_ref(row.get("image"))
    filename = _text(row.get("filename")) or (Path(image_path).name if image_path else "")
    meta = _as_dict(row.get("meta"), "meta", where)
    for key in REQUIRED_META:
        meta.setdefault(key, None)
    # Keys absent from a row come back as nulls of the shared struct; drop them (the required ones stay).
    meta = {k: v for k, v in meta.items() if v is not None or k in REQUIRED_META}
    boxes = _boxes(row.get("bboxes"), where)
    labels_json = meta.pop(BOX_LABELS_KEY, None)
    if labels_json is not None:
        labels = _json_list(labels_json)
        if labels is not None and len(labels) == len(boxes):
            for box, label in zip(boxes, labels, strict=True):
                if box.label is None and label is not None:
                    box.label = str(label)
        else:
            meta[BOX_LABELS_KEY] = labels_json
            log.warning("%s: box_labels does not match the %d boxes; kept in meta", where, len(boxes))
    scan_id = _text(row.get("scan_id")) or (Path(filename).stem if filename else "")
    return NovaRecord(
        filename=filename,
        image_path=image_path,
        case_id=_text(row.get("case_id")),
        scan_id=scan_id,
        caption_text=_text(row.get("caption_text")),
        bboxes=boxes,
        meta=meta,
        image_bytes=image_bytes,
    )


def _text(value: Any) -> str:
    """Ids may be stored as integers or floats (``12.0``); normalise to text."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _image_ref(value: Any) -> tuple[str, bytes | None]:
    if value is None:
        return "", None
    if isinstance(value, dict):  # Hugging Face Image feature: {"bytes": ..., "path": ...}
        path = value.get("path") or ""
        data = value.get("bytes")
        return str(path), bytes(data) if data else None
    if isinstance(value, bytes | bytearray):
        return "", bytes(value)
    return str(value), None


def _as_dict(value: Any, column: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DatasetError(
                f"{where}: column {column!r} holds text that is not JSON ({exc}).",
                hint=f"{column} must be a struct or a JSON object.",
            ) from exc
    if isinstance(value, list):  # a map<string, string> column arrives as key/value pairs
        value = dict(value)
    if not isinstance(value, dict):
        raise DatasetError(
            f"{where}: column {column!r} is a {type(value).__name__}, not a struct.",
            hint=f"{column} must be a struct or a JSON object.",
        )
    return dict(value)


def _boxes(value: Any, where: str) -> list[BBox]:
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DatasetError(
                f"{where}: column 'bboxes' holds text that is not JSON ({exc}).",
                hint="bboxes must be a list of {x, y, width, height, source} structs.",
            ) from exc
    if isinstance(value, dict):  # struct of lists, as the Hugging Face Sequence feature stores it
        n = len(value.get("x") or [])
        value = [
            {k: (v[i] if isinstance(v, list) and i < len(v) else v) for k, v in value.items()}
            for i in range(n)
        ]
    boxes: list[BBox] = []
    for item in value:
        if not isinstance(item, dict):
            raise DatasetError(
                f"{where}: a box is a {type(item).__name__}, not a struct.",
                hint="bboxes must be a list of {x, y, width, height, source} structs.",
            )
        try:
            box = BBox(
                x=float(item["x"]),
                y=float(item["y"]),
                width=float(item["width"]),
                height=float(item["height"]),
                source=str(item.get("source") or item.get("rater") or GOLD),
                label=None if item.get("label") is None else str(item["label"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{where}: a box lacks a numeric x, y, width or height ({exc}).",
                hint="Each box needs x, y, width and height in pixels.",
            ) from exc
        boxes.append(box)
    return boxes


def _json_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, list) else None
