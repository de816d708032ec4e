"""The ``builtin`` VLM backend: Zebra's own small anomaly-aware model (see :mod:`vlm.model.network`).

Spec: ``builtin`` (the shipped ``zebra-vlm-v1`` checkpoint) or ``builtin:/path/to/ckpt.safetensors`` (any
checkpoint written by ``zebra vlm train`` / ``build-default``; its ``.json`` must sit beside it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlm.align import phase_correlation, shift
from vlm.caption import (
    ANOMALY_THRESHOLD,
    box_size_mm,
    change_statement,
    compose_caption,
    head_extent,
    location_words,
)
from vlm.checkpoint import DEFAULT_NAME, default_checkpoint, load_checkpoint, sha256_file
from vlm.findings import FindingsModel, findings_features, findings_sentence
from vlm.gate import EmbeddingStats, Gate, image_statistics
from vlm.gate_photo import PhotoClassifier
from vlm.model.decode import decode_boxes, fuse_flipped, upsample_heat
from vlm.model.fuse import fuse_for_inference
from vlm.model.vocab import size_class
from vlm.preprocess import Prepared, normalize_batch, prepare
from vlm.registry import VLMS
from vlm.types import CHANGE_LABELS, Attributes, Box, ChangeAnalysis, GateResult, ImageAnalysis, StudyAnalysis

log = logging.getLogger(__name__)

#: Boxes below this score are not reported by :meth:`BuiltinVLM.analyze_image`.
BOX_THRESHOLD = 0.3
MAX_BOXES = 5
#: Size estimates from the regression head alone (no pixel spacing) get this confidence: below the
#: caption threshold, so they are reported in the attributes but not stated in the caption.
HEAD_SIZE_CONFIDENCE = 0.4


@dataclass
class InferenceSettings:
    """Test-time options of the box head, stored in the checkpoint JSON under ``inference``.

    Attributes:
        flip_tta: Also run the horizontally mirrored image and fuse the box-head maps
            (:func:`vlm.model.decode.fuse_flipped`); doubles the network cost of an analysis.
        nms_iou: NMS overlap threshold of the box decoding.
        top_k: Centre peaks kept per image before NMS.
        size_scale: Factor on the decoded box width and height.
    """

    flip_tta: bool = False
    nms_iou: float = 0.5
    top_k: int = 20
    size_scale: float = 1.0

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> InferenceSettings:
        """From the checkpoint JSON's ``inference`` block (unknown keys ignored, missing ones default)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (meta or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


@dataclass
class RawPrediction:
    """Un-gated model outputs for one image, in input-image pixels."""

    prepared: Prepared
    boxes: np.ndarray  # (n, 5) x1, y1, x2, y2, score
    heatmap: np.ndarray  # input size, [0, 1]
    anomaly: float
    attribute_probs: dict[str, np.ndarray]
    size_mm: float
    embedding: np.ndarray
    trunk: np.ndarray
    findings: np.ndarray | None = None  # finding-head features (vlm.findings.findings_features)


def _unwrap(image: Any) -> tuple[Any, tuple[float, float] | None]:
    """Accepts arrays, PIL images and :class:`zebra_intake.types.MedicalImage` (display + pixel spacing)."""
    if hasattr(image, "display") and hasattr(image, "pixel_spacing"):
        rgb = getattr(image, "rgb", None)
        return (rgb if rgb is not None else image.display), image.pixel_spacing
    return image, None


class BuiltinVLM:
    """Zebra's built-in anomaly-aware VLM on CPU (or ``device``).

    Args:
        checkpoint: The ``.safetensors`` checkpoint (its ``.json`` beside it).
        device: Torch device.
        inference: Test-time options; default: the checkpoint JSON's ``inference`` block.
    """

    def __init__(
        self, checkpoint: Path, *, device: str = "cpu", inference: InferenceSettings | None = None
    ) -> None:
        self.checkpoint = Path(checkpoint)
        model, self.meta = load_checkpoint(self.checkpoint, device=device)
        # Batch-norm folded into the convolutions: same outputs, ~15% faster on CPU.
        self.model = fuse_for_inference(model)
        self.device = device
        self.config = self.model.config
        self.sha256 = sha256_file(self.checkpoint)
        self.name = f"builtin:{self.checkpoint.stem}@{self.sha256[:12]}"
        self.inference = inference or InferenceSettings.from_meta(self.meta.get("inference"))
        gate_meta, trunk_meta = self.meta.get("gate"), self.meta.get("gate_trunk")
        self.gate = Gate(
            EmbeddingStats.from_dict(gate_meta) if gate_meta else None,
            EmbeddingStats.from_dict(trunk_meta) if trunk_meta else None,
            PhotoClassifier.from_dict(self.meta["gate_photo"]) if self.meta.get("gate_photo") else None,
        )
        if gate_meta is None:
            log.warning(
                "checkpoint %s has no gate statistics: the gate uses image statistics only", checkpoint
            )
        block = self.meta.get("findings")
        self.findings_model = FindingsModel.load(block, self.checkpoint.parent) if block else None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ model passes
    @torch.inference_mode()
    def _run(self, squares: list[np.ndarray]) -> dict[str, Any]:
        x = normalize_batch(torch.from_numpy(np.stack(squares)).to(self.device))
        with self._lock:
            feats = self.model.encode(x)
            out = self.model.heads(feats)
            if self.inference.flip_tta:
                # The mirror pass needs no embedding; its maps are fused into the box head's outputs only
                # (attributes such as the side, the tokens and the embedding come from the image itself).
                mirrored = self.model.heads(self.model.encode(x.flip(-1), with_embedding=False))
                out["center_plain"] = out["center"]
                out.update(fuse_flipped(out, mirrored))
        out["features"] = feats
        out["embedding"] = torch.nn.functional.normalize(feats.embedding, dim=-1)
        return out

    def predict(self, images: Sequence[Any], *, batch_size: int = 16) -> list[RawPrediction]:
        """Un-gated predictions (evaluation and benchmarks use this directly)."""
        preds: list[RawPrediction] = []
        for start in range(0, len(images), batch_size):
            chunk = [
                prepare(_unwrap(im)[0], self.config.image_size) for im in images[start : start + batch_size]
            ]
            out = self._run([p.square for p in chunk])
            preds += self._raw(chunk, out)
        return preds

    def _raw(self, chunk: list[Prepared], out: dict[str, Any]) -> list[RawPrediction]:
        settings = self.inference
        log_size = out["box_size"]
        if settings.size_scale != 1.0:
            log_size = log_size + float(np.log(settings.size_scale))
        boxes = decode_boxes(
            out["center"], log_size, out["offset"], top_k=settings.top_k, iou=settings.nms_iou
        )
        heats = upsample_heat(out["center"], self.config.image_size)
        anomaly = torch.sigmoid(out["anomaly"]).cpu().numpy()
        probs = {k: torch.softmax(v, dim=1).cpu().numpy() for k, v in out["attributes"].items()}
        sizes = out["size_log_mm"].exp().cpu().numpy()
        emb = out["embedding"].cpu().numpy()
        trunk = out["features"].trunk.cpu().numpy()
        finding_x = findings_features(out, np.stack([p.square for p in chunk]))
        result = []
        for i, p in enumerate(chunk):
            b = boxes[i]
            mapped = (
                np.concatenate([p.box.to_input(b[:, :4]), b[:, 4:5]], axis=1) if len(b) else np.zeros((0, 5))
            )
            keep = (
                (mapped[:, 2] - mapped[:, 0] > 1) & (mapped[:, 3] - mapped[:, 1] > 1) if len(mapped) else []
            )
            result.append(
                RawPrediction(
                    prepared=p,
                    boxes=mapped[keep] if len(mapped) else mapped,
                    heatmap=np.clip(p.box.unpad(heats[i]), 0, 1).astype(np.float32),
                    anomaly=float(anomaly[i]),
                    attribute_probs={k: v[i] for k, v in probs.items()},
                    size_mm=float(sizes[i]),
                    embedding=emb[i].astype(np.float32),
                    trunk=trunk[i].astype(np.float32),
                    findings=finding_x[i],
                )
            )
        return result

    # ------------------------------------------------------------------ composition
    def _attributes(
        self, raw: RawPrediction, boxes: list[Box], spacing: tuple[float, float] | None
    ) -> Attributes:
        vocab = self.config.attributes
        values: dict[str, Any] = {}
        conf: dict[str, float] = {}
        for key, probs in raw.attribute_probs.items():
            j = int(np.argmax(probs))
            values[key] = vocab[key][j]
            conf[key] = float(probs[j])
        size = box_size_mm(boxes[0], spacing) if boxes else None
        if size is not None:
            conf["size_mm"] = float(boxes[0].score)
        else:
            size = raw.size_mm
            conf["size_mm"] = HEAD_SIZE_CONFIDENCE
        side, region = values.get("side"), values.get("region")
        if side and region:
            site = (
                f"{region}"
                if region == "sellar region"
                else f"{side} {region}"
                if side != "midline"
                else f"midline {region}"
            )
            conf["site"] = (
                min(conf.get("side", 0.0), conf.get("region", 0.0))
                if region != "sellar region"
                else conf["region"]
            )
        else:
            site = None
        return Attributes(
            site=site,
            region=region,
            size_mm=round(float(size), 1),
            size_class=size_class(size),
            shape=values.get("shape"),
            margin=values.get("margin"),
            signal=values.get("signal"),
            enhancement=values.get("enhancement"),
            multiplicity=values.get("multiplicity"),
            mass_effect=values.get("mass_effect"),
            confidences={k: round(v, 4) for k, v in conf.items()},
        )

    def _compose(
        self, raw: RawPrediction, spacing: tuple[float, float] | None, gate: GateResult
    ) -> ImageAnalysis:
        extent = head_extent(raw.prepared.gray)
        boxes = []
        for b in raw.boxes[:MAX_BOXES]:
            if b[4] >= BOX_THRESHOLD:
                box = Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4]), "finding")
                box.position = location_words(box, extent)
                boxes.append(box)
        found = raw.anomaly >= ANOMALY_THRESHOLD or any(b.score >= ANOMALY_THRESHOLD for b in boxes)
        attributes = self._attributes(raw, boxes, spacing) if found else None
        findings = (
            self.findings_model.predict(raw.findings)[0]
            if self.findings_model is not None and raw.findings is not None
            else None
        )
        caption = compose_caption(
            raw.anomaly,
            boxes,
            attributes,
            raw.prepared.gray,
            pixel_spacing=spacing,
            findings=findings_sentence(findings) if findings is not None else None,
        )
        return ImageAnalysis(
            gate=gate,
            anomaly_score=raw.anomaly,
            boxes=boxes,
            heatmap=raw.heatmap,
            attributes=attributes,
            caption=caption,
            embedding=raw.embedding,
            model=self.name,
            findings=findings,
        )

    def _gated(self, gate: GateResult) -> ImageAnalysis:
        return ImageAnalysis(gate, None, [], None, None, None, None, self.name)

    # ------------------------------------------------------------------ public API
    def analyze_image(self, image: Any, *, pixel_spacing: tuple[float, float] | None = None) -> ImageAnalysis:
        """Gates, detects, localises, describes and embeds one image.

        Args:
            image: 2-D / HxWx3 array, PIL image or ``MedicalImage`` (its display image and pixel spacing).
            pixel_spacing: (row, column) mm per pixel, for sizes in mm (taken from a ``MedicalImage``).
        """
        img, spacing = _unwrap(image)
        spacing = pixel_spacing or spacing
        prepared = prepare(img, self.config.image_size)
        stats = image_statistics(prepared.gray, prepared.rgb)
        early = self.gate.check_metadata(image) or self.gate.check_statistics(stats)
        if early is not None:
            return self._gated(early)
        raw = self._raw([prepared], self._run([prepared.square]))[0]
        gate = self.gate.decide(stats, raw.embedding, raw.trunk)
        if not gate.accepted:
            return self._gated(gate)
        return self._compose(raw, spacing, gate)

    def analyze(
        self, image: Any, *, prior: Any = None, pixel_spacing: tuple[float, float] | None = None
    ) -> StudyAnalysis:
        """Analyses ``image`` and, with ``prior``, the prior and the change since it.

        The prior is translated onto the current image by phase correlation before the ``<Diff>`` tokens
        compare their features; the prior's own analysis is mapped back to its original position.
        """
        if prior is None:
            return StudyAnalysis(current=self.analyze_image(image, pixel_spacing=pixel_spacing))
        img, spacing = _unwrap(image)
        spacing = pixel_spacing or spacing
        pimg, pspacing = _unwrap(prior)
        cur_p = prepare(img, self.config.image_size)
        pri_p = prepare(pimg, self.config.image_size)
        gates = []
        for source, p in ((image, cur_p), (prior, pri_p)):
            stats = image_statistics(p.gray, p.rgb)
            gates.append((stats, self.gate.check_metadata(source) or self.gate.check_statistics(stats)))
        if gates[0][1] is not None:
            return StudyAnalysis(current=self._gated(gates[0][1]))
        dy, dx = phase_correlation(cur_p.square, pri_p.square)
        aligned = shift(pri_p.square, dy, dx)
        out = self._run([cur_p.square, aligned])
        raw_cur = self._raw([cur_p], _index(out, 0))[0]
        gate_cur = self.gate.decide(gates[0][0], raw_cur.embedding, raw_cur.trunk)
        if not gate_cur.accepted:
            return StudyAnalysis(current=self._gated(gate_cur))
        current = self._compose(raw_cur, spacing, gate_cur)
        if gates[1][1] is not None:
            return StudyAnalysis(current=current, prior=self._gated(gates[1][1]))
        # The prior's own analysis on its original (un-shifted) square.
        raw_pri = self._raw([pri_p], self._run([pri_p.square]))[0]
        gate_pri = self.gate.decide(gates[1][0], raw_pri.embedding, raw_pri.trunk)
        if not gate_pri.accepted:
            return StudyAnalysis(current=current, prior=self._gated(gate_pri))
        prior_an = self._compose(raw_pri, pspacing, gate_pri)
        with torch.inference_mode(), self._lock:
            cur_out, pri_out = _plain(_index(out, 0)), _plain(_index(out, 1))
            ch = self.model.change(cur_out["features"], pri_out["features"], cur_out, pri_out)
        probs = torch.softmax(ch["change"], dim=1)[0].cpu().numpy()
        label = CHANGE_LABELS[int(np.argmax(probs))]
        diff = np.clip(cur_p.box.unpad(upsample_heat(ch["diff_heat"], self.config.image_size)[0]), 0, 1)
        area_change = _area_change(current, prior_an)
        change = ChangeAnalysis(
            label=label,
            confidence=float(probs.max()),
            probabilities={name: float(p) for name, p in zip(CHANGE_LABELS, probs, strict=True)},
            diff_heatmap=diff.astype(np.float32),
            statement=change_statement(label, float(probs.max()), area_change),
        )
        return StudyAnalysis(current=current, prior=prior_an, change=change)

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised encoder embeddings ``(n, E)`` float32 (the retrieval image space)."""
        if len(images) == 0:
            return np.zeros((0, int(self.model.visual.attnpool.c_proj.out_features)), np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), 32):
                squares = [
                    prepare(_unwrap(im)[0], self.config.image_size).square
                    for im in images[start : start + 32]
                ]
                x = normalize_batch(torch.from_numpy(np.stack(squares)).to(self.device))
                out.append(self.model.embed(x).cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _index(out: dict[str, Any], i: int) -> dict[str, Any]:
    from vlm.model.network import Features

    picked: dict[str, Any] = {}
    for k, v in out.items():
        if isinstance(v, Features):
            picked[k] = Features(
                v.p8[i : i + 1],
                v.p16[i : i + 1],
                None if v.embedding is None else v.embedding[i : i + 1],
                None if v.trunk is None else v.trunk[i : i + 1],
            )
        elif isinstance(v, dict):
            picked[k] = {kk: vv[i : i + 1] for kk, vv in v.items()}
        elif torch.is_tensor(v):
            picked[k] = v[i : i + 1]
    return picked


def _plain(out: dict[str, Any]) -> dict[str, Any]:
    """The un-augmented centre map (the change head was trained on single-pass outputs)."""
    return {**out, "center": out["center_plain"]} if "center_plain" in out else out


def _area_change(current: ImageAnalysis, prior: ImageAnalysis) -> float | None:
    """Relative change of the top box's area as a fraction of the image (``None`` without boxes)."""
    if not current.boxes or not prior.boxes or current.heatmap is None or prior.heatmap is None:
        return None
    a = current.boxes[0].width * current.boxes[0].height / current.heatmap.size
    b = prior.boxes[0].width * prior.boxes[0].height / prior.heatmap.size
    return a / b - 1.0 if b > 0 else None


@VLMS.register(
    "builtin", help="Zebra's own anomaly-aware VLM (zebra-vlm-v1, or builtin:/path/ckpt.safetensors)"
)
def _builtin(arg: str = "", *, device: str = "cpu", **_: object) -> BuiltinVLM:
    path = Path(arg).expanduser() if arg else default_checkpoint()
    return BuiltinVLM(path, device=device)


__all__ = ["DEFAULT_NAME", "BuiltinVLM", "InferenceSettings", "RawPrediction"]
