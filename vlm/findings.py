"""Finding heads: modality, sequence or contrast phase, plane, and the appearance and site of the finding.

What a radiologist writes first about an image ("Axial non-contrast CT: bilateral hypodense extra-axial
collections ...") is learnt from the real MedPix 2.0 **train** images: their ``Modality`` and ``Plane`` fields
and the words of their captions (:data:`TERMS_FILE`). The heads are linear (multinomial or binary logistic
regressions) on features the network computes anyway (:func:`findings_features`): the trunk's pooled channel
statistics, the retrieval embedding, a 3x3 grid of the stride-16 neck map (where things are), the neck map
pooled under the anomaly heatmap (what the finding looks like), an intensity histogram, an 8x8 thumbnail and
the left-right symmetry of the letterboxed image. Each head's probabilities are temperature-calibrated on
out-of-fold predictions of the training images; a value is *stated* only above the head's threshold, also
chosen on the training images (:mod:`vlm.train.findings`). The term heads are *stacked*: a second linear stage
reads the first stage's term logits beside the modality, sequence and plane probabilities (a T2 image's
"hyperintense" is more often said than a CT's). Terms are stated from probability 0.5 on (more likely than not);
terms above a lower *query threshold* (the best out-of-fold F1 on the training images) are *cues*: they steer
retrieval and the agreement features of the agent, and the caption says them only hedged, in a separate
"Possible (less likely than not): ..." sentence.

A tumour-type head (glioma, meningioma, pituitary adenoma, no tumour), fitted on the brain-tumour MRI set, names
the type only inside its applicability domain: a stated MR that a domain head places among that set's images
(:meth:`FindingsModel._tumour_type`, :mod:`vlm.train.tumour_type`).

The weights live in a safetensors file beside the checkpoint (``<stem>.findings.safetensors``, digest in the
checkpoint JSON's ``findings`` block); nothing is unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlm.types import Findings, FindingValue

log = logging.getLogger(__name__)

TERMS_FILE = Path(__file__).with_name("findings_terms.txt")
#: Single-value heads and their classes (label text of MedPix ``Descriptions.json`` -> class, in
#: :func:`modality_class`, :func:`sequence_class`, :func:`plane_class`).
HEADS: tuple[str, ...] = ("modality", "sequence", "plane")
MODALITIES: tuple[str, ...] = ("CT", "MR")
SEQUENCES: tuple[str, ...] = (
    "ct_noncontrast",
    "ct_contrast",
    "cta",
    "t1",
    "t1c",
    "t2",
    "flair",
    "dwi",
    "adc",
    "gre",
    "mra",
)
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: What the caption calls each sequence class.
SEQUENCE_WORDS: Mapping[str, str] = {
    "ct_noncontrast": "non-contrast CT",
    "ct_contrast": "contrast-enhanced CT",
    "cta": "CT angiography",
    "t1": "T1-weighted MR",
    "t1c": "post-contrast T1-weighted MR",
    "t2": "T2-weighted MR",
    "flair": "FLAIR MR",
    "dwi": "diffusion-weighted MR",
    "adc": "MR ADC map",
    "gre": "gradient-echo (T2*) MR",
    "mra": "MR angiography",
}
SEQUENCE_MODALITY: Mapping[str, str] = {s: ("CT" if s.startswith("ct") else "MR") for s in SEQUENCES}
_NEGATIONS = {"no", "not", "without", "absent", "negative", "free"}
_CLAUSE = re.compile(r"[.;:,!?()]")


# ---------------------------------------------------------------------------------------- labels
def modality_class(text: str | None) -> str | None:
    """``CT`` / ``MR`` from a MedPix ``Modality`` field (``"CT - noncontrast"``, ``"MRA - ..."``)."""
    t = (text or "").strip().upper()
    if t.startswith("CT"):
        return "CT"
    if t.startswith("MR"):
        return "MR"
    return None


def sequence_class(text: str | None) -> str | None:
    """The sequence / contrast class of a MedPix ``Modality`` field, ``None`` when it names none of
    :data:`SEQUENCES` (montages, "MR - Other Pulse Seq." ...)."""
    t = (text or "").strip().lower()
    table = (
        ("ct - noncontrast", "ct_noncontrast"),
        ("ct w/contrast", "ct_contrast"),
        ("cta", "cta"),
        ("mr - t2 weighted", "t2"),
        ("mr - t1w - noncontrast", "t1"),
        ("mr - t1w w/g", "t1c"),
        ("mr - flair", "flair"),
        ("mra", "mra"),
        ("mr - dwi", "dwi"),
        ("mr - adc", "adc"),
        ("mr t2*", "gre"),
    )
    return next((cls for prefix, cls in table if t.startswith(prefix)), None)


def plane_class(text: str | None) -> str | None:
    """``axial`` / ``coronal`` / ``sagittal`` from a MedPix ``Plane`` field (``Transverse`` is axial)."""
    return {"axial": "axial", "transverse": "axial", "coronal": "coronal", "sagittal": "sagittal"}.get(
        (text or "").strip().lower()
    )


@dataclass(frozen=True)
class TermVocabulary:
    """The concepts of :data:`TERMS_FILE`: name, group and spellings."""

    names: tuple[str, ...]
    groups: tuple[str, ...]
    spellings: tuple[tuple[str, ...], ...]

    def group_of(self, name: str) -> str:
        """The group of a concept name."""
        return self.groups[self.names.index(name)]

    @functools.cached_property
    def _patterns(self) -> list[tuple[int, re.Pattern[str]]]:
        pats = []
        for i, spellings in enumerate(self.spellings):
            for s in spellings:
                words = [re.escape(w) for w in _words(s)]
                pats.append((i, re.compile(r"\b" + r"\s+".join(words) + r"\b")))
        # longest spelling first, so "ring enhancement" is found before "enhancement"
        return sorted(pats, key=lambda p: -len(p[1].pattern))

    def extract(self, text: str | None) -> set[str]:
        """Concept names a caption mentions (not negated within three words in its clause).

        Hyphens and slashes read as spaces and the text is lower-cased; a longer spelling claims its words
        first, so ``ring enhancement`` does not also count as ``enhancement``.
        """
        found: set[str] = set()
        for clause in _CLAUSE.split(_normalise(text or "")):
            taken = [False] * (len(clause) + 1)
            for i, pat in self._patterns:
                for m in pat.finditer(clause):
                    if any(taken[m.start() : m.end()]):
                        continue
                    before = clause[: m.start()].split()[-3:]
                    for k in range(m.start(), m.end()):
                        taken[k] = True
                    if not _NEGATIONS.intersection(before):
                        found.add(self.names[i])
        return found


def _normalise(text: str) -> str:
    return re.sub(r"[-/]", " ", text.lower())


def _words(text: str) -> list[str]:
    return _normalise(text).split()


@functools.lru_cache(maxsize=4)
def load_vocabulary(path: Path = TERMS_FILE) -> TermVocabulary:
    """Reads the term vocabulary file (``group: name|synonym|...`` per line)."""
    names, groups, spellings = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        group, _, rest = line.partition(":")
        parts = [p.strip() for p in rest.split("|") if p.strip()]
        if not parts:
            continue
        names.append(parts[0])
        groups.append(group.strip())
        spellings.append(tuple(parts))
    return TermVocabulary(tuple(names), tuple(groups), tuple(spellings))


# ---------------------------------------------------------------------------------------- features
#: The parts of the feature vector, in order.
FEATURE_PARTS: tuple[str, ...] = ("trunk", "embedding", "grid3", "heat_pooled", "hist", "thumb", "symmetry")


def findings_features(out: Mapping[str, Any], squares: np.ndarray) -> np.ndarray:
    """``(B, D)`` float32 feature vectors from one network pass (module docstring).

    Args:
        out: :meth:`vlm.backends.builtin.BuiltinVLM._run` outputs (``features``, ``embedding``, ``center``).
        squares: ``(B, S, S)`` letterboxed grayscale inputs in [0, 1].
    """
    import torch
    import torch.nn.functional as F

    feats = out["features"]
    center = out.get("center_plain", out["center"])
    p16 = feats.p16.float()
    with torch.inference_mode():
        heat = torch.sigmoid(center.float())
        heat = F.interpolate(heat, size=p16.shape[-2:], mode="bilinear", align_corners=False)
        pooled = (p16 * heat).sum((2, 3)) / (heat.sum((2, 3)) + 1e-6)
        grid = F.adaptive_avg_pool2d(p16, 3).flatten(1)
        sq = torch.as_tensor(np.asarray(squares, dtype=np.float32))
        thumb = F.adaptive_avg_pool2d(sq[:, None], 8).flatten(1)
    sq_np = np.asarray(squares, dtype=np.float32)
    hist = np.stack([np.histogram(s, bins=16, range=(0.0, 1.0))[0] / s.size for s in sq_np])
    mirrored = sq_np[:, :, ::-1]
    a = sq_np.reshape(len(sq_np), -1) - sq_np.reshape(len(sq_np), -1).mean(1, keepdims=True)
    b = mirrored.reshape(len(sq_np), -1) - mirrored.reshape(len(sq_np), -1).mean(1, keepdims=True)
    sym = (a * b).sum(1) / (np.sqrt((a * a).sum(1) * (b * b).sum(1)) + 1e-9)
    parts = [
        feats.trunk.float().cpu().numpy(),
        out["embedding"].float().cpu().numpy(),
        grid.cpu().numpy(),
        pooled.cpu().numpy(),
        hist,
        thumb.cpu().numpy(),
        sym[:, None],
    ]
    return np.concatenate(parts, axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------- model
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass
class LinearHead:
    """A calibrated linear head on standardised features.

    Attributes:
        classes: Class names (softmax heads) or term names (sigmoid heads).
        coef: ``(K, D)`` weights. intercept: ``(K,)``.
        temperature: ``(K,)`` for sigmoid heads (one per term) or ``(1,)`` for softmax heads.
        threshold: A value is stated when its probability reaches this.
        kind: ``"softmax"`` or ``"sigmoid"``. groups: Term groups (sigmoid heads).
        query_threshold: Terms from this probability on are retrieval cues (sigmoid heads; ``None``: the
            stated threshold).
        inputs: A *stacked* head reads, instead of the features, the outputs of these heads (in this order:
            a sigmoid head's calibrated logits, a softmax head's probabilities); empty: the features.
    """

    classes: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    temperature: np.ndarray
    threshold: float
    kind: str = "softmax"
    groups: tuple[str, ...] = ()
    query_threshold: float | None = None
    inputs: tuple[str, ...] = ()

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(B, K)`` temperature-scaled logits of inputs ``x``."""
        return (x @ self.coef.T + self.intercept) / self.temperature

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``(B, K)`` calibrated probabilities of inputs ``x`` (standardised features, or the stacked inputs)."""
        z = self.logits(x)
        return _softmax(z) if self.kind == "softmax" else _sigmoid(z)


def stack_inputs(
    outputs: Mapping[str, np.ndarray], heads: Mapping[str, LinearHead], names: Sequence[str]
) -> np.ndarray:
    """The input of a stacked head: the named heads' outputs side by side (a sigmoid head's as logits, so that a
    linear second stage can keep the first stage's evidence unchanged; a softmax head's as probabilities)."""
    parts = []
    for name in names:
        out = np.asarray(outputs[name], dtype=np.float64)
        if heads[name].kind == "sigmoid":
            out = np.log(np.clip(out, 1e-9, 1.0)) - np.log(np.clip(1.0 - out, 1e-9, 1.0))
        parts.append(out)
    return np.concatenate(parts, axis=1)


@dataclass
class FindingsModel:
    """The finding heads of a checkpoint (module docstring).

    Attributes:
        mean, scale: Feature standardisation ``(D,)``. proj: ``(D, P)`` projection of the standardised
        features (principal components) that the heads read; ``None``: the heads read them directly. heads: Name -> head (``modality``, ``sequence``,
        ``plane``, ``terms``). meta: The checkpoint JSON's ``findings`` block (metrics, data, thresholds).
    """

    mean: np.ndarray
    scale: np.ndarray
    heads: dict[str, LinearHead]
    meta: dict[str, Any] = field(default_factory=dict)
    proj: np.ndarray | None = None

    @functools.cached_property
    def term_priors(self) -> dict[str, float]:
        """Term -> share of the training images whose caption says it (from the fit report), if recorded."""
        report = (self.meta.get("cv") or {}).get("terms") or {}
        n = (self.meta.get("data") or {}).get("n_images") or report.get("n_images")
        positives = report.get("positives") or {}
        return {t: int(c) / int(n) for t, c in positives.items()} if n else {}

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.mean.shape[0])

    def probabilities(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Head name -> ``(B, K)`` probabilities of raw feature vectors ``(B, D)``."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        if self.proj is not None:
            x = x @ self.proj
        out = {name: head.probabilities(x) for name, head in self.heads.items() if not head.inputs}
        # stacked heads last, in order: each reads heads computed before it
        for name, head in self.heads.items():
            if head.inputs:
                out[name] = head.probabilities(stack_inputs(out, self.heads, head.inputs))
        return out

    def predict(self, features: np.ndarray) -> list[Findings]:
        """One :class:`~vlm.types.Findings` per feature row."""
        return self.from_probabilities(self.probabilities(np.atleast_2d(features)))

    def from_probabilities(self, probs: Mapping[str, np.ndarray]) -> list[Findings]:
        """One :class:`~vlm.types.Findings` per row of :meth:`probabilities`' output."""
        n = next(iter(probs.values())).shape[0] if probs else 0
        return [self._one({k: v[i] for k, v in probs.items()}) for i in range(n)]

    def _pick(self, name: str, p: np.ndarray, allowed: Sequence[str] | None = None) -> FindingValue | None:
        head = self.heads.get(name)
        if head is None:
            return None
        p = np.asarray(p, dtype=np.float64)
        if allowed is not None:
            mask = np.array([c in allowed for c in head.classes])
            if mask.any():
                # the sequence must belong to the stated modality; its probability is not renormalised
                p = np.where(mask, p, 0.0)
        j = int(np.argmax(p))
        conf = float(p[j])
        return FindingValue(head.classes[j], conf, name, conf >= head.threshold)

    def _one(self, probs: Mapping[str, np.ndarray]) -> Findings:
        modality = self._pick("modality", probs["modality"]) if "modality" in probs else None
        allowed = (
            [s for s in SEQUENCES if SEQUENCE_MODALITY[s] == modality.value]
            if modality is not None and modality.stated
            else None
        )
        sequence = self._pick("sequence", probs["sequence"], allowed) if "sequence" in probs else None
        plane = self._pick("plane", probs["plane"]) if "plane" in probs else None
        terms: list[FindingValue] = []
        head = self.heads.get("terms")
        if head is not None:
            cue_at = head.query_threshold if head.query_threshold is not None else head.threshold
            priors = self.term_priors
            for name, group, p in zip(head.classes, head.groups, probs["terms"], strict=True):
                terms.append(
                    FindingValue(
                        name, float(p), group, bool(p >= head.threshold), bool(p >= cue_at), priors.get(name)
                    )
                )
            _consistent(terms, modality)
        kind = self._tumour_type(probs, modality)
        if kind is not None:
            terms.append(kind)
        terms.sort(key=lambda t: -t.confidence)
        findings = Findings(modality, sequence, plane, terms)
        findings.header = header_text(findings)
        return findings

    def _tumour_type(
        self, probs: Mapping[str, np.ndarray], modality: FindingValue | None
    ) -> FindingValue | None:
        """The tumour-type head's value as a term of group :data:`TUMOUR_GROUP`, or ``None``.

        It speaks only inside its training domain: a stated MR, and the domain head's probability that the image
        is like the tumour set's at least that head's threshold; ``no tumour`` is never a term; below the head's
        query threshold it is silent, below its stated threshold it is a cue (said hedged).
        """
        head, domain = self.heads.get(TUMOUR_TYPE), self.heads.get(TUMOUR_DOMAIN)
        if head is None or domain is None or TUMOUR_TYPE not in probs or TUMOUR_DOMAIN not in probs:
            return None
        if modality is None or not modality.stated or modality.value != "MR":
            return None
        inside = float(np.asarray(probs[TUMOUR_DOMAIN])[domain.classes.index(IN_DOMAIN)])
        if inside < domain.threshold:
            return None
        p = np.asarray(probs[TUMOUR_TYPE], dtype=np.float64)
        j = int(np.argmax(p))
        value, conf = head.classes[j], float(p[j])
        cue_at = head.query_threshold if head.query_threshold is not None else head.threshold
        if value == NO_TUMOUR or conf < cue_at:
            return None
        return FindingValue(value, conf, TUMOUR_GROUP, conf >= head.threshold, True)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> dict[str, Any]:
        """Writes the weights (safetensors) and returns the JSON block that points at them."""
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32)}
        if self.proj is not None:
            tensors["proj"] = self.proj.astype(np.float32)
        for name, head in self.heads.items():
            tensors[f"{name}.coef"] = head.coef.astype(np.float32)
            tensors[f"{name}.intercept"] = head.intercept.astype(np.float32)
            tensors[f"{name}.temperature"] = np.asarray(head.temperature, dtype=np.float32)
        # safetensors writes the raw buffer: a transposed (Fortran-order) array would come back scrambled
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        path = Path(path)
        save_file(tensors, str(path))
        block = dict(self.meta)
        block.update(
            {
                "file": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "dim": self.dim,
                "feature_parts": list(FEATURE_PARTS),
                "heads": {
                    name: {
                        "classes": list(h.classes),
                        "threshold": round(float(h.threshold), 4),
                        "kind": h.kind,
                        **({"groups": list(h.groups)} if h.groups else {}),
                        **(
                            {"query_threshold": round(float(h.query_threshold), 4)}
                            if h.query_threshold is not None
                            else {}
                        ),
                        **({"inputs": list(h.inputs)} if h.inputs else {}),
                    }
                    for name, h in self.heads.items()
                },
            }
        )
        return block

    @classmethod
    def load(cls, block: Mapping[str, Any], directory: Path) -> FindingsModel:
        """Reads the weights named by a checkpoint JSON's ``findings`` block.

        Raises:
            ModelError: When the file is missing or its digest differs from the block's.
        """
        from safetensors.numpy import load

        from zebra.errors import ModelError

        path = Path(directory) / str(block["file"])
        if not path.is_file():
            raise ModelError(
                f"Finding-head weights {path} are missing.",
                hint="Re-run `zebra vlm fit-findings` or restore the file beside the checkpoint.",
            )
        data = path.read_bytes()  # read once: digest and tensors from the same bytes
        digest = hashlib.sha256(data).hexdigest()
        if block.get("sha256") and digest != block["sha256"]:
            raise ModelError(
                f"Finding-head weights {path} do not match the checkpoint (sha256 {digest[:12]}).",
                hint="Re-run `zebra vlm fit-findings` for this checkpoint.",
            )
        t = load(data)
        heads = {}
        for name, spec in block["heads"].items():
            heads[name] = LinearHead(
                classes=tuple(spec["classes"]),
                coef=t[f"{name}.coef"].astype(np.float64),
                intercept=t[f"{name}.intercept"].astype(np.float64),
                temperature=t[f"{name}.temperature"].astype(np.float64),
                threshold=float(spec["threshold"]),
                kind=str(spec.get("kind", "softmax")),
                groups=tuple(spec.get("groups") or ()),
                query_threshold=(
                    float(spec["query_threshold"]) if spec.get("query_threshold") is not None else None
                ),
                inputs=tuple(spec.get("inputs") or ()),
            )
        for name, head in heads.items():
            unknown = [i for i in head.inputs if i not in heads or heads[i].inputs]
            if unknown:
                raise ModelError(
                    f"Finding head {name!r} reads {unknown}, which are not first-stage heads of {path.name}.",
                    hint=f"Heads present: {sorted(heads)}. Re-run `zebra vlm fit-findings`.",
                )
        proj = t["proj"].astype(np.float64) if "proj" in t else None
        return cls(t["mean"].astype(np.float64), t["scale"].astype(np.float64), heads, dict(block), proj)


def _consistent(terms: list[FindingValue], modality: FindingValue | None) -> None:
    """CT is described in density, MR in signal: the other vocabulary is never stated; without a confident
    modality neither is."""
    for t in terms:
        if t.group == "density" and not (modality and modality.stated and modality.value == "CT"):
            t.stated = t.cue = False
        if t.group == "signal" and not (modality and modality.stated and modality.value == "MR"):
            t.stated = t.cue = False


def header_text(findings: Findings) -> str:
    """``"Axial non-contrast CT"``: the confident plane and sequence (else modality)."""
    parts = []
    if findings.plane is not None and findings.plane.stated:
        parts.append(findings.plane.value.capitalize())
    if findings.sequence is not None and findings.sequence.stated:
        parts.append(SEQUENCE_WORDS.get(findings.sequence.value, findings.sequence.value))
    elif findings.modality is not None and findings.modality.stated:
        parts.append(findings.modality.value)
    text = " ".join(parts)
    return text[:1].upper() + text[1:] if text else ""


#: Appearance words said before the noun, in this order.
_BEFORE_NOUN = ("multiple", "well-defined", "heterogeneous", "cystic", "calcified", "necrotic")
_NOUN_TERMS = ("mass", "lesion")
_AFTER = (
    "enhancement",
    "ring enhancement",
    "leptomeningeal enhancement",
    "hemorrhage",
    "calcification",
    "edema",
    "necrosis",
    "mass effect",
    "midline shift",
    "herniation",
    "hydrocephalus",
    "infarct",
    "atrophy",
    "fracture",
    "aneurysm",
    "restricted diffusion",
    "flow void",
    "blooming",
)


#: At most this many uncertain terms are said, most probable first (a list of ten "possible" findings reads as
#: noise to a radiologist).
MAX_POSSIBLE = 5


def possible_terms(findings: Findings) -> list[str]:
    """The uncertain terms the caption hedges: retrieval cues that are not stated (probability between the
    head's query threshold and its stated threshold), most probable first, at most :data:`MAX_POSSIBLE`, and at
    most one side word (none when a side is stated)."""
    # one side at most, as in the stated sentence: "possible: right, left" says nothing
    side_said = any(t.stated and t.group == "side" for t in findings.terms)
    out = []
    for t in findings.terms:  # most probable first
        if not t.cue or t.stated or (t.group == "side" and side_said):
            continue
        side_said = side_said or t.group == "side"
        out.append(t.value)
    return out[:MAX_POSSIBLE]


#: Heads fitted on the brain-tumour MRI set (:mod:`vlm.train.tumour_type`): the tumour type, and whether an image
#: is like that set's images (its applicability domain).
TUMOUR_TYPE = "tumour_type"
TUMOUR_DOMAIN = "tumour_domain"
TUMOUR_GROUP = "tumour type"
NO_TUMOUR = "no tumour"
IN_DOMAIN = "tumour set"


def tumour_sentence(findings: Findings) -> str:
    """``"Appearance of a meningioma (tumour-type head, probability 0.97)."`` for a stated tumour type, else
    ``""`` (a cue is said in the hedged sentence)."""
    kind = next((t for t in findings.terms if t.group == TUMOUR_GROUP and t.stated), None)
    if kind is None:
        return ""
    article = "an" if kind.value[:1] in "aeiou" else "a"
    return f"Appearance of {article} {kind.value} (tumour-type head, probability {kind.confidence:.2f})."


#: The most probable sequence is said, hedged with its probability, when the sequence head does not state it
#: but gives it at least this calibrated probability (only within a stated modality: the sequence head then
#: chooses among that modality's sequences). Real captions name the sequence far more often than the head
#: can state one (32% of dev images at 0.75); the hedge tells the reader what the head leans to. Chosen on
#: MedPix **train** out of fold (case-grouped folds, the caption term F1 with the evaluation vocabulary of
#: :mod:`eval.metrics.terms`): 0.206 without the hedge; 0.230 from 0.2 and 0.3, 0.227 from 0.4, 0.220 from 0.5,
#: 0.214 from 0.6 (docs/vlm.md).
SEQUENCE_HINT = 0.3


def sequence_hint(findings: Findings) -> str:
    """``"Sequence uncertain: most likely T2-weighted MR (probability 0.52)."``, or ``""`` when the sequence is
    stated, below :data:`SEQUENCE_HINT`, or the modality is not stated."""
    seq, modality = findings.sequence, findings.modality
    if seq is None or seq.stated or seq.confidence < SEQUENCE_HINT or modality is None or not modality.stated:
        return ""
    words = SEQUENCE_WORDS.get(seq.value, seq.value)
    return f"Sequence uncertain: most likely {words} (probability {seq.confidence:.2f})."


def findings_sentence(findings: Findings) -> str:
    """The findings in a radiologist's order: header, then appearance, compartment and site, then the hedge.

    E.g. ``"Axial non-contrast CT: bilateral hypodense extra-axial lesion; frontal lobe; with mass effect.
    Possible (less likely than not): edema, hemorrhage."`` The first sentence holds only stated (confident)
    values; terms between the query threshold and the stated one follow in the hedged sentence
    (:func:`possible_terms`), never as facts; an uncertain sequence is said between them, with its probability
    (:func:`sequence_hint`).
    """
    possible = possible_terms(findings)
    hedge = "Possible (less likely than not): " + ", ".join(possible) + "." if possible else ""
    return " ".join(
        s
        for s in (_stated_sentence(findings), tumour_sentence(findings), sequence_hint(findings), hedge)
        if s
    )


def _stated_sentence(findings: Findings) -> str:
    stated = [t for t in findings.terms if t.stated]
    by_group: dict[str, list[str]] = {}
    for t in stated:
        by_group.setdefault(t.group, []).append(t.value)
    names = {t.value for t in stated}
    sides = by_group.get("side", [])
    side = "bilateral" if "bilateral" in sides else sides[0] if sides else ""
    before = [w for w in ("multiple",) if w in names]
    if side:
        before.append(side)
    before += by_group.get("density", []) + by_group.get("signal", [])[:2]
    before += [w for w in _BEFORE_NOUN if w in names and w != "multiple"]
    before += by_group.get("compartment", [])[:2]
    noun = next((n for n in _NOUN_TERMS if n in names), "finding" if (before or by_group.get("site")) else "")
    body = " ".join([*before, noun]).strip()
    sites = by_group.get("site", [])[:3]
    if sites and body:
        body += " involving the " + ", ".join(sites)
    elif sites:
        body = "involving the " + ", ".join(sites)
    after = [w for w in _AFTER if w in names]
    if after:
        body = (body + ", with " if body else "with ") + ", ".join(after)
    header = findings.header
    if header and body:
        return f"{header}: {body}."
    if header:
        return f"{header}."
    return (body[:1].upper() + body[1:] + ".") if body else ""


__all__ = [
    "FEATURE_PARTS",
    "HEADS",
    "MODALITIES",
    "PLANES",
    "SEQUENCES",
    "FindingsModel",
    "LinearHead",
    "TermVocabulary",
    "findings_features",
    "findings_sentence",
    "header_text",
    "load_vocabulary",
    "modality_class",
    "plane_class",
    "possible_terms",
    "sequence_class",
    "sequence_hint",
    "stack_inputs",
]
