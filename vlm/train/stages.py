"""The four training stages. Each says which parameters train, how a batch is built and what it costs.

* ``clip``: contrastive image-caption learning (MedPix head images + captions); with ``lock_image`` only
  the text tower trains against fixed image embeddings (LiT), used last to re-align text to the final
  encoder.
* ``ano``: anomaly score, boxes, heatmap and attributes (tumour boxes + synthetic lesions); trains the
  encoder, neck, ``<Ano>`` tokens and their heads.
* ``diff``: the ``<Diff>`` tokens, change head and difference heatmap on synthetic longitudinal pairs, with
  registration jitter before phase-correlation alignment; everything else frozen.
* ``explain``: the attribute and size heads only, on attribute-labelled rows.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlm.align import phase_correlation, shift
from vlm.model.decode import decode_boxes
from vlm.model.network import STRIDE, Features
from vlm.model.tokenizer import tokenizer_for
from vlm.preprocess import normalize_batch
from vlm.train.augment import AugmentConfig, augment
from vlm.train.bundle import Bundle
from vlm.train.data import ATTR_KEYS, ImageSet
from vlm.train.errors import TrainingDataError
from vlm.train.losses import anomaly_loss, attribute_loss, box_losses, clip_loss, size_loss
from vlm.train.targets import box_targets

log = logging.getLogger(__name__)

_DIFF_MODULES = ("diff_in", "diff", "change_head", "diff_heat")
_SIDE = ATTR_KEYS.index("side")


def _images(data: ImageSet, idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.images[idx].astype(np.float32) / 255.0)


def _swap_sides(attrs: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Horizontal flips swap right and left (indices 0 and 1 of the side vocabulary)."""
    side = attrs[:, _SIDE].clone()
    flip_side = flips & (side >= 0) & (side <= 1)
    side[flip_side] = 1 - side[flip_side]
    attrs = attrs.clone()
    attrs[:, _SIDE] = side
    return attrs


class Stage:
    """Base class: subclasses set ``name``/``default_lr`` and implement the hooks."""

    name = ""
    default_lr = 1e-3

    def __init__(self, data: ImageSet, batch_size: int, val: ImageSet | None = None, **options: Any) -> None:
        self.data = data
        self.batch_size = batch_size
        self.val = val
        self.options = options
        self.items = self.select_items()
        if len(self.items) == 0:
            raise TrainingDataError(
                f"The data have nothing usable for stage {self.name!r}.",
                hint=self.missing_hint(),
            )

    def select_items(self) -> np.ndarray:
        """Indices of usable rows."""
        return np.arange(len(self.data))

    def missing_hint(self) -> str:
        """What to pass when :meth:`select_items` finds nothing."""
        return "Check the --data sets."

    def steps_per_epoch(self) -> int:
        """Batches per epoch (the last partial batch is dropped when there is more than one)."""
        return max(1, len(self.items) // self.batch_size)

    def permutation(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's item order, a pure function of seed and epoch (so resumes see the same order)."""
        rng = np.random.default_rng([seed, epoch, 7])
        return self.items[rng.permutation(len(self.items))]

    def trainable(self, bundle: Bundle) -> list[nn.Parameter]:
        """Freezes what this stage does not train; returns the rest."""
        raise NotImplementedError

    def train_mode(self, bundle: Bundle) -> None:
        """Sets train/eval modes (frozen parts stay in eval so batch-norm statistics do not drift)."""
        bundle.clip.train()

    def loss(
        self, bundle: Bundle, idx: np.ndarray, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss of the batch ``idx`` and its parts."""
        raise NotImplementedError

    def validate(self, bundle: Bundle) -> dict[str, float]:
        """Validation metrics (empty when there is no validation set)."""
        return {}


def _set_trainable(modules: list[nn.Module], bundle: Bundle) -> list[nn.Parameter]:
    for p in bundle.clip.parameters():
        p.requires_grad_(False)
    for p in bundle.vlm.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                p.requires_grad_(True)
                params.append(p)
                seen.add(id(p))
    return params


# --------------------------------------------------------------------------- clip
class ClipStage(Stage):
    """Contrastive image-caption training."""

    name = "clip"
    default_lr = 5e-4

    def select_items(self) -> np.ndarray:
        return np.array([i for i, c in enumerate(self.data.captions) if c.strip()], np.int64)

    def missing_hint(self) -> str:
        return (
            "The clip stage needs captioned images: pass a MedPix NOVA set (zebra data convert medpix ...)."
        )

    def _tokens(self, bundle: Bundle, idx: np.ndarray) -> torch.Tensor:
        return tokenizer_for(bundle.vlm.config.arch)([self.data.captions[i] for i in idx])

    def trainable(self, bundle: Bundle) -> list[nn.Parameter]:
        text = [m for n, m in bundle.clip.named_children() if n != "visual"]
        params = _set_trainable(text, bundle)
        for name, p in bundle.clip.named_parameters():
            if not name.startswith("visual.") and id(p) not in {id(q) for q in params}:
                p.requires_grad_(True)
                params.append(p)
        visual = bundle.vlm.visual
        if self.options.get("lock_image"):
            params += _set_trainable_extra(visual.layer4) + _set_trainable_extra(visual.attnpool)
        else:
            params += _set_trainable_extra(visual)
        return params

    def train_mode(self, bundle: Bundle) -> None:
        bundle.clip.train()
        if self.options.get("lock_image"):
            bundle.vlm.eval()
            bundle.vlm.visual.layer4.train()

    def _image_embeddings(self, bundle: Bundle, idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        images = _images(self.data, idx)
        cfg = AugmentConfig(flip=0.0, scale=(0.9, 1.1), shift=0.05)
        images, _, _, _ = augment(images, [np.zeros((0, 4))] * len(idx), gen, cfg)
        x = normalize_batch(images)
        v = bundle.vlm.visual
        if self.options.get("lock_image"):
            # LiT-style: the detection trunk (stem..layer3) stays fixed; layer4, the attention pool
            # (the embedding) and the text tower align.
            with torch.no_grad():
                trunk = v.layer3(v.layer2(v.layer1(v.stem(x))))
            return F.normalize(v.attnpool(v.layer4(trunk)), dim=-1)
        return bundle.vlm.embed(x)

    def loss(
        self, bundle: Bundle, idx: np.ndarray, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        image = self._image_embeddings(bundle, idx, gen)
        text = F.normalize(bundle.clip.encode_text(self._tokens(bundle, idx)), dim=-1)
        loss = clip_loss(image, text, bundle.clip.logit_scale)
        return loss, {"clip": loss.item()}

    def validate(self, bundle: Bundle) -> dict[str, float]:
        if self.val is None:
            return {}
        from vlm.eval.retrieval import image_to_text_recall

        return image_to_text_recall(bundle, self.val, k=10)


def _set_trainable_extra(module: nn.Module) -> list[nn.Parameter]:
    params = []
    for p in module.parameters():
        p.requires_grad_(True)
        params.append(p)
    return params


# --------------------------------------------------------------------------- ano
class AnoStage(Stage):
    """Anomaly score, boxes, heatmap and attributes."""

    name = "ano"
    default_lr = 1e-3
    weights = {"heat": 1.0, "size": 1.0, "offset": 1.0, "anomaly": 1.0, "attributes": 0.5, "size_mm": 0.3}

    def select_items(self) -> np.ndarray:
        has_boxes = np.diff(self.data.box_offsets) > 0
        return np.where((self.data.anomaly >= 0) | has_boxes)[0].astype(np.int64)

    def missing_hint(self) -> str:
        return "The ano stage needs labelled images: a YOLO tumour train split and/or synthetic lesions."

    def _head_modules(self, bundle: Bundle) -> list[nn.Module]:
        v = bundle.vlm
        return [v.lat8, v.lat16, v.smooth8, v.smooth16, v.ano, v.anomaly_head, v.attr_heads, v.size_head,
                v.film, v.box_trunk, v.center, v.box_size, v.offset]  # fmt: skip

    def trainable(self, bundle: Bundle) -> list[nn.Parameter]:
        v = bundle.vlm.visual
        return _set_trainable([v.conv1, v.bn1, v.conv2, v.bn2, v.conv3, v.bn3, v.layer1, v.layer2, v.layer3,
                               *self._head_modules(bundle)], bundle)  # fmt: skip

    def train_mode(self, bundle: Bundle) -> None:
        bundle.clip.eval()
        bundle.vlm.train()
        for name in _DIFF_MODULES:
            getattr(bundle.vlm, name).eval()
        bundle.vlm.visual.layer4.eval()
        bundle.vlm.visual.attnpool.eval()

    def batch(self, idx: np.ndarray, gen: torch.Generator, aug: bool = True) -> dict[str, Any]:
        images = _images(self.data, idx)
        boxes = [self.data.boxes_of(int(i)) for i in idx]
        attrs = torch.from_numpy(self.data.attrs[idx].astype(np.int64))
        sizes = self.options.get("train_sizes") or []
        if sizes:
            # Multi-scale training: the network is fully convolutional up to the heads, and smaller
            # inputs make CPU training affordable; the last epochs run at the full size.
            size = int(sizes[int(torch.randint(len(sizes), (1,), generator=gen))])
            if size != images.shape[-1]:
                factor = size / images.shape[-1]
                images = F.interpolate(images.unsqueeze(1), size=(size, size), mode="area")[:, 0]
                boxes = [(b * factor).astype(np.float32) for b in boxes]
        if aug:
            images, boxes, _, flips = augment(images, boxes, gen, AugmentConfig())
            attrs = _swap_sides(attrs, flips)
        return {
            "x": normalize_batch(images),
            "boxes": boxes,
            "attrs": attrs,
            "anomaly": torch.from_numpy(self.data.anomaly[idx].astype(np.int64)),
            "size_mm": torch.from_numpy(self.data.size_mm[idx]),
        }

    def loss(
        self, bundle: Bundle, idx: np.ndarray, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        batch = self.batch(idx, gen)
        cfg = bundle.vlm.config
        out = bundle.vlm.heads(bundle.vlm.encode(batch["x"], with_embedding=False))
        parts = box_losses(out, box_targets(batch["boxes"], batch["x"].shape[-1], cfg.max_objects))
        parts["anomaly"] = anomaly_loss(out["anomaly"], batch["anomaly"])
        parts["attributes"] = attribute_loss(out["attributes"], batch["attrs"], ATTR_KEYS)
        parts["size_mm"] = size_loss(out["size_log_mm"], batch["size_mm"])
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def validate(self, bundle: Bundle) -> dict[str, float]:
        if self.val is None:
            return {}
        limit = int(self.options.get("val_limit") or len(self.val))
        return detection_metrics(bundle.vlm, self.val, limit=limit)


@torch.no_grad()
def detection_metrics(
    model: nn.Module, data: ImageSet, *, limit: int | None = None, batch_size: int = 32
) -> dict[str, float]:
    """mAP@0.3/0.5 (per image and data set), pointing game and AUROC on model-space images."""
    from vlm.eval.metrics import auroc, dataset_ap, mean_image_ap, pointing_game

    was_training = model.training
    model.eval()
    n = len(data) if limit is None else min(limit, len(data))
    index = np.linspace(0, len(data) - 1, n).round().astype(np.int64) if n < len(data) else np.arange(n)
    preds, golds, heats, scores, labels = [], [], [], [], []
    for start in range(0, len(index), batch_size):
        idx = index[start : start + batch_size]
        out = model.heads(model.encode(normalize_batch(_images(data, idx)), with_embedding=False))
        preds += decode_boxes(out["center"], out["box_size"], out["offset"])
        heats += list(torch.sigmoid(out["center"][:, 0]).numpy())
        scores += torch.sigmoid(out["anomaly"]).tolist()
        for i in idx:
            golds.append(data.boxes_of(int(i)))
            labels.append(int(data.anomaly[i]))
    stride = data.images.shape[1] / heats[0].shape[0] if heats else 1.0
    gold_cells = [g / stride for g in golds]
    known = [i for i, lab in enumerate(labels) if lab >= 0]
    model.train(was_training)
    return {
        "map30": mean_image_ap(preds, golds, 0.3),
        "map50": mean_image_ap(preds, golds, 0.5),
        "ap30_dataset": dataset_ap(preds, golds, 0.3),
        "ap50_dataset": dataset_ap(preds, golds, 0.5),
        "pointing_game": pointing_game(heats, gold_cells),
        "auroc": auroc([scores[i] for i in known], [labels[i] for i in known]),
        "n_images": float(len(index)),
    }


# --------------------------------------------------------------------------- diff
class DiffStage(Stage):
    """Change classification and difference heatmap on aligned longitudinal pairs."""

    name = "diff"
    default_lr = 1e-3

    def select_items(self) -> np.ndarray:
        if self.data.partner is None or self.data.masks is None:
            return np.zeros(0, np.int64)
        return np.where(self.data.partner >= 0)[0].astype(np.int64)

    def missing_hint(self) -> str:
        return (
            "The diff stage needs longitudinal pairs with masks: zebra data convert synthetic - OUT --pairs."
        )

    def trainable(self, bundle: Bundle) -> list[nn.Parameter]:
        upgrade_change_cue(bundle)
        return _set_trainable([getattr(bundle.vlm, n) for n in _DIFF_MODULES], bundle)

    def train_mode(self, bundle: Bundle) -> None:
        bundle.clip.eval()
        bundle.vlm.eval()
        for name in _DIFF_MODULES:
            getattr(bundle.vlm, name).train()

    def pair_batch(
        self, data: ImageSet, idx: np.ndarray, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Current and aligned prior images, change labels and difference targets (stride-8 cells)."""
        from vlm.types import CHANGE_LABELS

        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)) if gen else 0)
        cur_l, pri_l, labels, targets = [], [], [], []
        worse, better = CHANGE_LABELS.index("worsening"), CHANGE_LABELS.index("improved")
        for i in idx:
            j = int(data.partner[i])
            cur, pri = data.images[i].astype(np.float32) / 255, data.images[j].astype(np.float32) / 255
            cmask, pmask = data.masks[i].astype(np.float32), data.masks[j].astype(np.float32)
            label = int(data.change[i])
            if gen is not None:
                if rng.random() < 0.5:  # time reversal: worsening <-> improved, stable stays
                    cur, pri, cmask, pmask = pri, cur, pmask, cmask
                    label = {worse: better, better: worse}.get(label, label)
                if rng.random() < 0.5:
                    cur, pri, cmask, pmask = (
                        np.ascontiguousarray(a[:, ::-1]) for a in (cur, pri, cmask, pmask)
                    )
                # Registration jitter and re-acquisition intensity change of the prior.
                dy, dx = (int(v) for v in rng.integers(-12, 13, size=2))
                pri, pmask = shift(pri, dy, dx), shift(pmask, dy, dx)
                pri = np.clip(pri * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05), 0, 1)
            dy, dx = phase_correlation(cur, pri)
            pri, pmask = shift(pri, dy, dx), shift(pmask, dy, dx)
            cur_l.append(cur)
            pri_l.append(pri)
            labels.append(label)
            targets.append(np.abs(cmask - pmask))
        tgt = F.avg_pool2d(torch.from_numpy(np.stack(targets)).unsqueeze(1), STRIDE)
        return (
            normalize_batch(torch.from_numpy(np.stack(cur_l))),
            normalize_batch(torch.from_numpy(np.stack(pri_l))),
            torch.tensor(labels),
            tgt,
        )

    def forward(self, bundle: Bundle, cur: torch.Tensor, pri: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frozen single-image passes, then the trainable change module."""
        return self._change(bundle, self._frozen(bundle, cur, pri))

    def _frozen(self, bundle: Bundle, cur: torch.Tensor, pri: torch.Tensor) -> dict[str, torch.Tensor]:
        """The frozen encoder/head outputs the change module reads, for a batch of pairs."""
        v = bundle.vlm
        with torch.no_grad():
            both = v.encode(torch.cat([cur, pri]), with_embedding=False)
            outs = v.heads(both)
        n = len(cur)
        return {
            "p8c": both.p8[:n], "p8p": both.p8[n:], "p16c": both.p16[:n], "p16p": both.p16[n:],
            "tokc": outs["tokens"][:n], "tokp": outs["tokens"][n:],
            "cenc": outs["center"][:n], "cenp": outs["center"][n:],
        }  # fmt: skip

    def _change(self, bundle: Bundle, f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fc = Features(f["p8c"].float(), f["p16c"].float(), None)
        fp = Features(f["p8p"].float(), f["p16p"].float(), None)
        oc = {"tokens": f["tokc"].float(), "center": f["cenc"].float()}
        op = {"tokens": f["tokp"].float(), "center": f["cenp"].float()}
        return bundle.vlm.change(fc, fp, oc, op)

    def _ensure_cache(self, bundle: Bundle) -> None:
        """Precomputes ``feature_variants`` jittered versions of every pair through the frozen network.

        The encoder and ``<Ano>`` heads are frozen in this stage, so their outputs for a few random
        registration/intensity jitters per pair can be computed once (float16) and the change module
        trained for many epochs at almost no cost.
        """
        variants = int(self.options.get("feature_variants") or 0)
        if variants <= 0 or getattr(self, "_cache", None) is not None:
            return
        store: dict[str, list[torch.Tensor]] = {}
        was = bundle.vlm.training
        bundle.vlm.eval()
        seed = int(self.options.get("seed", 0))
        for v in range(variants):
            for start in range(0, len(self.items), 32):
                idx = self.items[start : start + 32]
                gen = torch.Generator().manual_seed(
                    int(np.random.default_rng([seed, v, start, 13]).integers(2**62))
                )
                cur, pri, labels, tgt = self.pair_batch(self.data, idx, gen)
                feats = self._frozen(bundle, cur, pri)
                for k, t in {**feats, "labels": labels, "tgt": tgt}.items():
                    store.setdefault(k, []).append(t.half() if t.is_floating_point() else t)
        bundle.vlm.train(was)
        self.train_mode(bundle)
        self._cache = {k: torch.cat(v) for k, v in store.items()}
        log.info("diff stage: cached %d pair variants", len(self._cache["labels"]))

    def loss(
        self, bundle: Bundle, idx: np.ndarray, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        self._ensure_cache(bundle)
        if getattr(self, "_cache", None) is not None:
            n_items = len(self.items)
            variant = torch.randint(int(self.options["feature_variants"]), (len(idx),), generator=gen).numpy()
            rows = np.searchsorted(self.items, idx) + variant * n_items
            f = {k: v[torch.from_numpy(rows)] for k, v in self._cache.items()}
            labels, tgt = f.pop("labels"), f.pop("tgt").float()
            out = self._change(bundle, f)
        else:
            cur, pri, labels, tgt = self.pair_batch(self.data, idx, gen)
            out = self._change(bundle, self._frozen(bundle, cur, pri))
        ce = F.cross_entropy(out["change"], labels)
        heat = F.binary_cross_entropy_with_logits(out["diff_heat"], tgt, pos_weight=torch.tensor(5.0))
        acc = float((out["change"].argmax(1) == labels).float().mean())
        return ce + heat, {"change": ce.item(), "diff_heat": heat.item(), "train_acc": acc}

    def validate(self, bundle: Bundle) -> dict[str, float]:
        if self.val is None or self.val.partner is None:
            return {}
        if int(self.options.get("feature_variants") or 0) > 0:
            # The frozen outputs of the (un-jittered) validation pairs never change within the stage:
            # computed once, every epoch's validation costs only the change module.
            if getattr(self, "_val_cache", None) is None:
                self._val_cache = frozen_pair_outputs(self, bundle, self.val)
            return change_metrics(self, bundle, self.val, frozen=self._val_cache)
        return change_metrics(self, bundle, self.val)


def upgrade_change_cue(bundle: Bundle, cue: str = "excess") -> None:
    """Switches a checkpoint trained with another change cue to ``cue`` (a fresh, seeded change head).

    Checkpoints before the configurable cue (zebra-vlm-v1) read the whole heatmap's mass, which carries
    almost no size-change signal; the ``diff`` stage retrains the change head anyway.
    """
    from vlm.model.network import make_change_head

    config = bundle.vlm.config
    if config.change_cue == cue:
        return
    log.info("diff stage: change cue %r -> %r (new change head)", config.change_cue, cue)
    config.change_cue = cue
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(17)
        bundle.vlm.change_head = make_change_head(config)


@torch.no_grad()
def frozen_pair_outputs(
    stage: DiffStage, bundle: Bundle, data: ImageSet, batch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Frozen-network outputs (and labels) of every pair of ``data``, without jitter."""
    was = bundle.vlm.training
    bundle.vlm.eval()
    items = np.where(data.partner >= 0)[0]
    store: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(items), batch_size):
        cur, pri, labels, _ = stage.pair_batch(data, items[start : start + batch_size], None)
        for k, t in {**stage._frozen(bundle, cur, pri), "labels": labels}.items():
            store.setdefault(k, []).append(t)
    bundle.vlm.train(was)
    return {k: torch.cat(v) for k, v in store.items()}


@torch.no_grad()
def change_metrics(
    stage: DiffStage,
    bundle: Bundle,
    data: ImageSet,
    batch_size: int = 16,
    frozen: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Change accuracy (and recall per class) on the pairs of ``data``, without jitter.

    ``frozen``: precomputed :func:`frozen_pair_outputs` of ``data`` (then only the change module runs).
    """
    from vlm.types import CHANGE_LABELS

    was = bundle.vlm.training
    bundle.vlm.eval()
    frozen = frozen if frozen is not None else frozen_pair_outputs(stage, bundle, data, batch_size)
    feats = {k: v for k, v in frozen.items() if k != "labels"}
    preds = stage._change(bundle, feats)["change"].argmax(1).tolist()
    golds = frozen["labels"].tolist()
    bundle.vlm.train(was)
    p, g = np.array(preds), np.array(golds)
    out = {"change_accuracy": float((p == g).mean()) if len(g) else float("nan"), "n_pairs": float(len(g))}
    for k, name in enumerate(CHANGE_LABELS):
        sel = g == k
        out[f"recall_{name}"] = float((p[sel] == k).mean()) if sel.any() else float("nan")
    return out


# --------------------------------------------------------------------------- explain
class ExplainStage(AnoStage):
    """Attribute and size heads only (captions are composed from them)."""

    name = "explain"
    default_lr = 1e-3

    def select_items(self) -> np.ndarray:
        known = (self.data.attrs >= 0).any(axis=1) | np.isfinite(self.data.size_mm)
        return np.where(known)[0].astype(np.int64)

    def missing_hint(self) -> str:
        return (
            "The explain stage needs attribute labels: synthetic lesion sets (zebra data convert synthetic)."
        )

    def trainable(self, bundle: Bundle) -> list[nn.Parameter]:
        return _set_trainable([bundle.vlm.attr_heads, bundle.vlm.size_head], bundle)

    def train_mode(self, bundle: Bundle) -> None:
        bundle.clip.eval()
        bundle.vlm.eval()
        bundle.vlm.attr_heads.train()

    def loss(
        self, bundle: Bundle, idx: np.ndarray, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        batch = self.batch(idx, gen)
        v = bundle.vlm
        with torch.no_grad():
            tokens, _ = v.ano(v.encode(batch["x"], with_embedding=False).p16)
        from vlm.model.layers import pool_tokens

        pooled = pool_tokens(tokens)
        logits = {k: head(pooled) for k, head in v.attr_heads.items()}
        attr = attribute_loss(logits, batch["attrs"], ATTR_KEYS)
        size = size_loss(v.size_head(pooled).squeeze(1), batch["size_mm"])
        return attr + 0.3 * size, {"attributes": attr.item(), "size_mm": size.item()}

    def validate(self, bundle: Bundle) -> dict[str, float]:
        return {}


STAGES: dict[str, type[Stage]] = {s.name: s for s in (ClipStage, AnoStage, DiffStage, ExplainStage)}
