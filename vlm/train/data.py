"""Training sets read from NOVA-layout data, preprocessed once into compact NumPy caches.

Every image is letterboxed to the model size and stored as uint8; boxes are stored in model pixels.
Rows whose ``meta["split"]`` is a held-out split (``valid``, ``dev``, ``test``) are never used for
training: the tumour set's ``valid`` split is Zebra's fixed validation split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vlm.model.vocab import ATTRIBUTE_VOCAB, ENHANCEMENT_OF_TYPE, SIGNAL_OF_TYPE
from vlm.preprocess import letterbox, to_gray01
from vlm.train.errors import TrainingDataError

log = logging.getLogger(__name__)

#: Splits never trained on.
HELD_OUT_SPLITS = frozenset({"valid", "val", "validation", "dev", "test"})
CACHE_VERSION = 3
ATTR_KEYS: tuple[str, ...] = tuple(ATTRIBUTE_VOCAB)


@dataclass
class ImageSet:
    """Preprocessed images with whatever labels the source has.

    Attributes:
        images: ``(N, S, S)`` uint8 letterboxed grayscale.
        anomaly: ``(N,)`` int8: 1 lesion, 0 normal, -1 unknown.
        box_offsets: ``(N + 1,)`` int64 offsets into ``boxes``.
        boxes: ``(M, 4)`` float32 ``x1, y1, x2, y2`` in model pixels.
        attrs: ``(N, len(ATTR_KEYS))`` int16 class indices, -1 unknown.
        size_mm: ``(N,)`` float32 largest diameter in mm, NaN unknown.
        captions: Caption per image ("" when none).
        ids: Scan id per image.
        masks: ``(N, S, S)`` uint8 lesion masks (pair sets only) or ``None``.
        change: ``(N,)`` int8 change label of a current scan (index into CHANGE_LABELS), -1 otherwise.
        partner: ``(N,)`` int64 index of the prior scan of a current scan, -1 otherwise.
    """

    images: np.ndarray
    anomaly: np.ndarray
    box_offsets: np.ndarray
    boxes: np.ndarray
    attrs: np.ndarray
    size_mm: np.ndarray
    captions: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    masks: np.ndarray | None = None
    change: np.ndarray | None = None
    partner: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def boxes_of(self, i: int) -> np.ndarray:
        """``(k, 4)`` boxes of image ``i``."""
        return self.boxes[self.box_offsets[i] : self.box_offsets[i + 1]]

    def subset(self, index: np.ndarray) -> ImageSet:
        """The rows ``index`` (partners are re-mapped; pairs whose prior is dropped lose their label)."""
        index = np.asarray(index, dtype=np.int64)
        boxes = [self.boxes_of(int(i)) for i in index]
        offsets = np.zeros(len(index) + 1, np.int64)
        offsets[1:] = np.cumsum([len(b) for b in boxes])
        remap = {int(old): new for new, old in enumerate(index)}
        partner = change = None
        if self.partner is not None and self.change is not None:
            partner = np.array([remap.get(int(self.partner[i]), -1) for i in index], np.int64)
            change = np.where(partner >= 0, self.change[index], -1).astype(np.int8)
        return ImageSet(
            images=self.images[index],
            anomaly=self.anomaly[index],
            box_offsets=offsets,
            boxes=np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
            attrs=self.attrs[index],
            size_mm=self.size_mm[index],
            captions=[self.captions[i] for i in index],
            ids=[self.ids[i] for i in index],
            masks=None if self.masks is None else self.masks[index],
            change=change,
            partner=partner,
        )

    def save(self, path: Path) -> None:
        """Writes ``path`` (``.npz``, no pickles) and ``path.json`` atomically."""
        arrays = {
            "images": self.images,
            "anomaly": self.anomaly,
            "box_offsets": self.box_offsets,
            "boxes": self.boxes,
            "attrs": self.attrs,
            "size_mm": self.size_mm,
        }
        for name in ("masks", "change", "partner"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        meta_tmp = path.with_name(f".{path.name}.{os.getpid()}.json.tmp")
        meta_tmp.write_text(
            json.dumps({"version": CACHE_VERSION, "captions": self.captions, "ids": self.ids})
        )
        os.replace(meta_tmp, path.with_suffix(".json"))

    @classmethod
    def load(cls, path: Path) -> ImageSet:
        """Reads what :meth:`save` wrote."""
        meta = json.loads(path.with_suffix(".json").read_text())
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(
            captions=meta["captions"],
            ids=meta["ids"],
            masks=arrays.pop("masks", None),
            change=arrays.pop("change", None),
            partner=arrays.pop("partner", None),
            **arrays,
        )


def concat(sets: list[ImageSet]) -> ImageSet:
    """Stacks image sets (pair links are shifted to the new indices)."""
    if len(sets) == 1:
        return sets[0]
    offsets = [0]
    for s in sets:
        offsets.append(offsets[-1] + len(s))
    box_offsets = [np.zeros(1, np.int64)]
    base = 0
    for s in sets:
        box_offsets.append(s.box_offsets[1:] + base)
        base += int(s.box_offsets[-1])
    has_pairs = any(s.partner is not None for s in sets)
    has_masks = all(s.masks is not None for s in sets)
    partner = change = None
    if has_pairs:
        partner = np.concatenate(
            [
                np.where(s.partner >= 0, s.partner + off, -1)
                if s.partner is not None
                else np.full(len(s), -1)
                for s, off in zip(sets, offsets, strict=False)
            ]
        ).astype(np.int64)
        change = np.concatenate(
            [s.change if s.change is not None else np.full(len(s), -1, np.int8) for s in sets]
        ).astype(np.int8)
    return ImageSet(
        images=np.concatenate([s.images for s in sets]),
        anomaly=np.concatenate([s.anomaly for s in sets]),
        box_offsets=np.concatenate(box_offsets),
        boxes=np.concatenate([s.boxes for s in sets]),
        attrs=np.concatenate([s.attrs for s in sets]),
        size_mm=np.concatenate([s.size_mm for s in sets]),
        captions=[c for s in sets for c in s.captions],
        ids=[i for s in sets for i in s.ids],
        masks=np.concatenate([s.masks for s in sets]) if has_masks else None,
        change=change,
        partner=partner,
    )


# --------------------------------------------------------------------------- labels from NOVA rows
def _vocab_index(key: str, value: object) -> int:
    vocab = ATTRIBUTE_VOCAB[key]
    return vocab.index(value) if value in vocab else -1


def _attributes(record: object, n_boxes: int) -> tuple[list[int], float]:
    """Attribute class indices and size in mm for a row (synthetic rows carry them; others partly)."""
    meta = record.meta  # type: ignore[attr-defined]
    labels = [-1] * len(ATTR_KEYS)
    size = float("nan")
    raw = meta.get("attributes")
    if raw:
        try:
            attrs = json.loads(raw)
        except json.JSONDecodeError:
            attrs = {}
        kind = attrs.get("type", "")
        values = {
            "side": attrs.get("side"),
            "region": attrs.get("region"),
            "shape": attrs.get("shape"),
            "margin": attrs.get("margin"),
            "signal": SIGNAL_OF_TYPE.get(kind),
            "enhancement": ENHANCEMENT_OF_TYPE.get(kind) if attrs.get("sequence") == "T1c" else None,
            "multiplicity": attrs.get("multiplicity"),
            "mass_effect": attrs.get("mass_effect"),
        }
        if attrs.get("n_foci", 1) == 0:
            values = dict.fromkeys(values)
        labels = [_vocab_index(k, values.get(k)) for k in ATTR_KEYS]
        if attrs.get("size_mm"):
            size = float(attrs["size_mm"])
    elif n_boxes:
        labels[ATTR_KEYS.index("multiplicity")] = _vocab_index(
            "multiplicity", "multiple" if n_boxes > 1 else "solitary"
        )
        if record.final_diagnosis == "Pituitary":  # type: ignore[attr-defined]
            labels[ATTR_KEYS.index("region")] = _vocab_index("region", "sellar region")
    return labels, size


def _anomaly_label(record: object, n_boxes: int) -> int:
    meta = record.meta  # type: ignore[attr-defined]
    status = meta.get("label_status")
    if status == "normal":
        return 0
    if status == "unlabelled":
        return -1
    if n_boxes:
        return 1
    if record.is_synthetic and meta.get("attributes"):  # type: ignore[attr-defined]
        return 0  # a synthetic scan whose lesion vanished
    return -1


def _cache_key(root: Path, size: int, masks: bool, heldout: bool) -> str:
    parquet = root / "data" / "nova-v1.parquet"
    if not parquet.is_file():
        raise TrainingDataError(
            f"{root} is not a NOVA-layout data set (no {parquet.name}).",
            hint="Convert it first with 'zebra data convert'.",
        )
    stat = parquet.stat()
    raw = f"{root.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}|{masks}|{heldout}|{CACHE_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def load_image_set(
    root: Path,
    *,
    size: int,
    cache_dir: Path,
    masks: bool = False,
    progress: bool = True,
    heldout: bool = False,
) -> ImageSet:
    """Reads a NOVA data set into an :class:`ImageSet` (cached by path, file stamp and size).

    Args:
        root: The NOVA data set root.
        size: Model input side.
        cache_dir: Where caches live.
        masks: Also load ``meta["mask_path"]`` masks (synthetic sets) and pair links.
        progress: Show a progress bar while building the cache.
        heldout: Keep held-out rows (validation); otherwise they are dropped.

    Raises:
        TrainingDataError: When the set has no trainable row (all rows held out, or none readable).
    """
    from zebra_datasets import read_nova

    root = Path(root).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / f"{root.name}-{_cache_key(root, size, masks, heldout)}.npz"
    if cache.is_file() and cache.with_suffix(".json").is_file():
        return ImageSet.load(cache)
    dataset = read_nova(root)
    rows = [
        r for r in dataset.records if heldout or str(r.meta.get("split") or "").lower() not in HELD_OUT_SPLITS
    ]
    dropped = len(dataset.records) - len(rows)
    if dropped:
        log.warning(
            "%s: %d rows of held-out splits (valid/dev/test) are not used for training", root, dropped
        )
    if not rows:
        raise TrainingDataError(
            f"No trainable row in {root}: every row is in a held-out split (valid/dev/test).",
            hint="Convert the train split (e.g. zebra data convert yolo SRC OUT --split train).",
        )
    images, anomaly, boxes, offsets, attrs, sizes, captions, ids, mask_list = (
        [],
        [],
        [],
        [0],
        [],
        [],
        [],
        [],
        [],
    )
    for record in tqdm(rows, desc=f"cache {root.name}", unit="img", disable=not progress):
        gray, _ = to_gray01(dataset.load_image(record))
        square, box = letterbox(gray, size)
        images.append(np.round(square * 255).astype(np.uint8))
        gold = [b.xyxy() for b in record.gold_boxes]
        model_boxes = box.to_model(np.array(gold, np.float64)) if gold else np.zeros((0, 4))
        boxes.append(model_boxes.astype(np.float32))
        offsets.append(offsets[-1] + len(gold))
        labels, size_mm = _attributes(record, len(gold))
        attrs.append(labels)
        sizes.append(size_mm)
        anomaly.append(_anomaly_label(record, len(gold)))
        captions.append(record.caption_text or "")
        ids.append(record.scan_id)
        if masks:
            mask_list.append(_load_mask(dataset.root, record, size))
    image_set = ImageSet(
        images=np.stack(images),
        anomaly=np.array(anomaly, np.int8),
        box_offsets=np.array(offsets, np.int64),
        boxes=np.concatenate(boxes).astype(np.float32),
        attrs=np.array(attrs, np.int16),
        size_mm=np.array(sizes, np.float32),
        captions=captions,
        ids=ids,
    )
    if masks:
        image_set.masks = np.stack(mask_list)
        _link_pairs(image_set, rows)
    image_set.save(cache)
    return image_set


def _load_mask(root: Path, record: object, size: int) -> np.ndarray:
    rel = record.meta.get("mask_path")  # type: ignore[attr-defined]
    if not rel:
        return np.zeros((size, size), np.uint8)
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise TrainingDataError(f"Mask path {rel!r} escapes {root}.", hint="Fix meta.mask_path.")
    with Image.open(path) as img:
        mask = np.asarray(img.convert("L"), np.float32) / 255.0
    square, _ = letterbox(mask, size)
    return (square > 0.5).astype(np.uint8)


def _link_pairs(image_set: ImageSet, rows: list) -> None:
    from vlm.types import CHANGE_LABELS

    index = {r.scan_id: i for i, r in enumerate(rows)}
    partner = np.full(len(rows), -1, np.int64)
    change = np.full(len(rows), -1, np.int8)
    for i, r in enumerate(rows):
        prior = r.meta.get("prior_scan_id")
        label = r.meta.get("change")
        if prior in index and label in CHANGE_LABELS:
            partner[i] = index[prior]
            change[i] = CHANGE_LABELS.index(label)
    image_set.partner, image_set.change = partner, change


def load_image_sets(
    roots: list[Path], *, size: int, cache_dir: Path, masks: bool = False, progress: bool = True
) -> ImageSet:
    """:func:`load_image_set` of every root, concatenated."""
    if not roots:
        raise TrainingDataError("No training data given.", hint="Pass --data NOVA_ROOT (repeatable).")
    return concat(
        [load_image_set(r, size=size, cache_dir=cache_dir, masks=masks, progress=progress) for r in roots]
    )


def load_heldout_sets(
    roots: list[Path], *, size: int, cache_dir: Path, masks: bool = False, progress: bool = True
) -> ImageSet:
    """Validation sets: like :func:`load_image_sets` but keeping held-out rows (they are what we want)."""
    return concat(
        [
            load_image_set(r, size=size, cache_dir=cache_dir, masks=masks, progress=progress, heldout=True)
            for r in roots
        ]
    )
