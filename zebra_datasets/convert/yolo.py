"""YOLO detection/segmentation sets (``data.yaml`` + ``<split>/{images,labels}``) to NOVA layout.

Each label line is ``class x1 y1 x2 y2 ...`` (a polygon, coordinates normalised to [0, 1]) or
``class cx cy w h`` (a box). A box is the polygon's extent, converted to pixels of the actual image.

Decisions (see ``docs/datasets.md``):

* Classes that mean "no finding" (``No_Tumor``, ``normal``, ``healthy`` ...) give no boxes: in the brain
  tumour set their polygon outlines the whole brain (median 66% of the image), not a lesion. The extents are
  kept in ``meta["outline_boxes"]``; ``final_diagnosis`` is the class name.
* Images whose label file is empty or missing are kept with no boxes, ``final_diagnosis`` null and
  ``meta["label_status"] = "unlabelled"``: an empty file is not evidence of "no tumour" here (the
  brain tumour set's empty files belong to glioma/meningioma/pituitary images), and we do not guess the
  class from the file name. Evaluations should skip rows without a diagnosis.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from PIL import Image
from tqdm import tqdm

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.convert.base import (
    CONVERTERS,
    ConvertReport,
    check_images_mode,
    check_out_dir,
    check_source_dir,
)
from zebra_datasets.nova_write import write_nova
from zebra_datasets.records import BBox, NovaRecord

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Class names that mean "nothing abnormal"; their polygons are not lesion boxes.
NORMAL_CLASS = re.compile(
    r"^(no[\s_-]*(tumou?rs?|findings?|lesions?|abnormality|abnormalities|disease)|normal|healthy|negative|background)$",
    re.IGNORECASE,
)
_SPLIT_ALIASES = {"val": "valid", "validation": "valid", "valid": "val"}


def is_normal_class(name: str) -> bool:
    """Whether a class name means "no finding" (``No_Tumor``, ``normal`` ...)."""
    return bool(NORMAL_CLASS.match(name.strip()))


def read_class_names(data_yaml: Path) -> list[str]:
    """Class names from ``data.yaml`` (``names`` as a list or an index-to-name mapping).

    Raises:
        DatasetError: When the file is missing or has no usable ``names``.
    """
    if not data_yaml.is_file():
        raise DatasetError(
            f"{data_yaml} is missing.", hint="Pass the YOLO set's folder (with data.yaml) as SRC."
        )
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{data_yaml} is not valid YAML: {exc}.", hint="Fix data.yaml.") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"{data_yaml}: names keys must be class indices.", hint="Fix data.yaml."
            ) from exc
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise DatasetError(f"{data_yaml} has no class 'names'.", hint="Add names: [...] to data.yaml.")


def find_splits(root: Path) -> dict[str, Path]:
    """Split name to folder, for every ``root/<split>/images`` folder."""
    return {p.name: p for p in sorted(root.iterdir()) if (p / "images").is_dir()}


def _choose_splits(split: str | None, available: dict[str, Path]) -> list[str]:
    chosen = (split or "all").strip().lower()
    if chosen == "all":
        return list(available)
    if chosen in available:
        return [chosen]
    alias = _SPLIT_ALIASES.get(chosen)
    if alias in available:
        return [alias]
    import difflib

    close = difflib.get_close_matches(chosen, [*available, "all"], n=1)
    did_you_mean = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"The YOLO set has no split {split!r}.{did_you_mean}",
        hint=f"Available: {', '.join([*available, 'all']) if available else '(no <split>/images folder found)'}.",
    )


def parse_label_file(
    path: Path, width: int, height: int, names: list[str], report: ConvertReport
) -> list[tuple[str, BBox]]:
    """Reads one label file: (class name, pixel box) per valid line; bad lines are counted and skipped."""
    out: list[tuple[str, BBox]] = []
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(float(parts[0]))
            coords = [float(v) for v in parts[1:]]
        except ValueError:
            report.skip("malformed label line", f"{path.name}:{lineno}")
            continue
        if len(coords) == 4:
            cx, cy, w, h = coords
            xs, ys = [cx - w / 2, cx + w / 2], [cy - h / 2, cy + h / 2]
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            xs, ys = coords[0::2], coords[1::2]
        else:
            report.skip("malformed label line", f"{path.name}:{lineno}")
            continue
        if 0 <= cls < len(names):
            name = names[cls]
        else:
            name = f"class_{cls}"
            report.note("class id not in data.yaml", f"{path.name}:{lineno}")
        x1, x2 = (min(max(v, 0.0), 1.0) * width for v in (min(xs), max(xs)))
        y1, y2 = (min(max(v, 0.0), 1.0) * height for v in (min(ys), max(ys)))
        if x2 <= x1 or y2 <= y1:
            report.skip("degenerate box (zero area)", f"{path.name}:{lineno}")
            continue
        out.append((name, BBox.from_xyxy(x1, y1, x2, y2, label=name)))
    return out


@CONVERTERS.register(
    "yolo", "YOLO polygon/box set (data.yaml, <split>/images, <split>/labels)", default_split="valid"
)
def convert_yolo(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    images: str = "copy",
    limit: int | None = None,
    progress: bool = False,
) -> ConvertReport:
    """Converts a YOLO set to NOVA layout: one row per image, ``case_id`` = ``scan_id`` = image stem.

    Boxes are gold, labelled with their class; ``final_diagnosis`` is the class name (several classes:
    their unique names joined with ``"; "``), ``meta["box_labels"]`` the per-box classes (JSON list).

    Args:
        src: The folder holding ``data.yaml``.
        out: The NOVA data set root to write.
        split: A ``<split>`` folder name (``val`` and ``valid`` are aliases) or ``all`` (the default: every split
            present; each row's ``meta["split"]`` says which).
        images: ``copy`` or ``link``.
        limit: Stop after this many rows.
        progress: Show a progress bar.

    Raises:
        DatasetError: When ``data.yaml`` or the split's images are missing.
        ConfigError: On an unknown split.
    """
    root = check_source_dir(src, what="YOLO data set")
    out_path = check_out_dir(out, root)
    mode = check_images_mode(images)
    names = read_class_names(root / "data.yaml")
    available = find_splits(root)
    splits = _choose_splits(split, available)
    report = ConvertReport("yolo", str(root), str(out_path), split="+".join(splits))
    licence = _licence(root / "data.yaml")

    todo: list[tuple[str, Path]] = []
    for name in splits:
        folder = available[name] / "images"
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                todo.append((name, path))
            elif path.is_file():
                report.skip("not an image file", path.name)
    if limit is not None:
        todo = todo[:limit]
    stem_count = Counter(p.stem for _, p in todo)

    records: list[NovaRecord] = []
    class_rows: Counter[str] = Counter()
    status: Counter[str] = Counter()
    for split_name, path in tqdm(todo, desc=f"yolo {'+'.join(splits)}", unit="img", disable=not progress):
        record = _record(root, split_name, path, names, report, unique=stem_count[path.stem] == 1)
        if record is None:
            continue
        records.append(record)
        status[record.meta["label_status"]] += 1
        for cls in json.loads(record.meta["classes"]):
            class_rows[cls] += 1
    if not records:
        raise DatasetError(f"No readable image in split(s) {', '.join(splits)} of {root}.", hint="Check SRC.")
    write_nova(
        records,
        out_path,
        images=mode,  # type: ignore[arg-type]
        name=f"{root.name}-{'+'.join(splits)}",
        source=str(root),
        licence=licence,
        synthetic=False,
        converter="yolo",
        extra_info={"split": "+".join(splits), "class_names": names, "skipped": dict(report.skipped)},
    )
    report.rows = len(records)
    report.cases = len({r.case_id for r in records})
    report.boxes = sum(len(r.bboxes) for r in records)
    report.extra["class_names"] = names
    report.extra["rows_per_class"] = dict(sorted(class_rows.items()))
    report.extra["label_status"] = dict(sorted(status.items()))
    return report


def _record(
    root: Path, split: str, path: Path, names: list[str], report: ConvertReport, *, unique: bool
) -> NovaRecord | None:
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, Image.DecompressionBombError) as exc:
        report.skip("unreadable image", f"{path.name}: {exc}")
        return None
    label_file = path.parent.parent / "labels" / f"{path.stem}.txt"
    if not label_file.is_file():
        report.note("no label file (kept, unlabelled)", path.name)
    parsed = parse_label_file(label_file, width, height, names, report)
    lesions = [(n, b) for n, b in parsed if not is_normal_class(n)]
    normals = [(n, b) for n, b in parsed if is_normal_class(n)]
    classes = list(dict.fromkeys(n for n, _ in parsed))
    lesion_classes = list(dict.fromkeys(n for n, _ in lesions))
    if lesion_classes:
        diagnosis: str | None = "; ".join(lesion_classes)
        label_status = "labelled"
    elif normals:
        diagnosis = "; ".join(dict.fromkeys(n for n, _ in normals))
        label_status = "normal"
    else:
        diagnosis = None
        label_status = "unlabelled"
        if label_file.is_file():
            report.note("empty label file (kept, unlabelled)", path.name)
    if lesions and normals:
        report.note("lesion and no-finding classes in one image (no-finding ignored)", path.name)
    meta: dict[str, Any] = {
        "clinical_history": None,
        "final_diagnosis": diagnosis,
        "classes": json.dumps(classes),
        "label_status": label_status,
        "split": split,
        "image_width": str(width),
        "image_height": str(height),
        "source_image": f"{split}/images/{path.name}",
        "source": f"YOLO set {root.name}",
        "synthetic": "false",
    }
    if normals:
        meta["outline_boxes"] = json.dumps(
            [[round(v, 3) for v in (b.x, b.y, b.width, b.height)] for _, b in normals]
        )
    filename = path.name if unique else f"{split}_{path.name}"
    return NovaRecord(
        filename=filename,
        image_path=f"images/{filename}",
        case_id=path.stem,
        scan_id=path.stem if unique else f"{split}_{path.stem}",
        caption_text="",
        bboxes=[b for _, b in lesions],
        meta=meta,
        image_source=path,
    )


def _licence(data_yaml: Path) -> str:
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    stated = (data.get("roboflow") or {}).get("license") if isinstance(data, dict) else None
    return (
        f"Licence stated in data.yaml: {stated or 'none'}. Check the source's terms before any use beyond "
        "development and evaluation; do not redistribute."
    )
