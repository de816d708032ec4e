"""The input gate: non-medical, out-of-domain, noise and blank images are flagged instead of described.

Two kinds of evidence:

* cheap image statistics (colour saturation, lag-1 autocorrelation and spectral flatness for noise,
  dynamic range for blank images, entropy, edge density, dark-background fraction);
* feature-space out-of-distribution scores: the Mahalanobis distance (top principal components plus a
  residual term) to the training images of (a) the encoder's embedding and (b) the trunk's pooled
  stride-16 features (channel means and standard deviations), which separate textures much better than the
  contrastive embedding. The statistics live in the checkpoint's JSON (``gate`` and ``gate_trunk``).

Head CT/MR slices show the anatomy surrounded by dark air; photographs rarely have a dark frame. A
*photo-like* image (bright border, little dark background) faces a stricter trunk threshold
(``photo_threshold``, a fixed fraction of the training 99.5th percentile). Tightly cropped medical images
are photo-like too, so some of them are rejected: that is the price of rejecting grayscale photographs.

Before all of these, the DICOM header (:mod:`vlm.gate_meta`): a modality other than CT/MR or a Body Part
Examined that is not the head refuses the image as ``out_of_domain``.

Last, a learnt photo classifier (:mod:`vlm.gate_photo`, the checkpoint's ``gate_photo`` block) rejects
images whose P(medical) from trunk features, embedding and statistics is below its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlm.gate_meta import check_metadata
from vlm.gate_photo import PhotoClassifier, photo_features
from vlm.types import GateResult

#: Rule thresholds (image statistics); an accepted medical slice is within all of them.
BLANK_STD = 0.015
BLANK_RANGE = 0.04
COLOUR_SATURATION = 0.15
NOISE_LAG1 = 0.45
NOISE_FLATNESS = 0.35
#: An image is photo-like when less than this share of its border and of all its pixels is dark.
PHOTO_BORDER_DARK = 0.3
PHOTO_DARK_FRACTION = 0.1


def _small(gray: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = gray.shape
    scale = side / max(h, w)
    if scale >= 1:
        return gray.astype(np.float32)
    img = Image.fromarray(gray.astype(np.float32), mode="F")
    return np.asarray(img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX))


def image_statistics(gray: np.ndarray, rgb: np.ndarray | None = None) -> dict[str, float]:
    """Cheap statistics of an image (``gray`` float in [0, 1]; ``rgb`` uint8 when the input was colour)."""
    g = _small(gray)
    p1, p99 = np.percentile(g, [1, 99])
    b = max(2, int(0.06 * min(g.shape)))
    frame = np.concatenate([g[:b].ravel(), g[-b:].ravel(), g[:, :b].ravel(), g[:, -b:].ravel()])
    stats: dict[str, float] = {
        "std": float(g.std()),
        "dynamic_range": float(p99 - p1),
        "dark_fraction": float(np.mean(g < 0.05)),
        "border_dark": float(np.mean(frame < 0.1)),
    }
    hist, _ = np.histogram(g, bins=64, range=(0.0, 1.0))
    prob = hist[hist > 0] / hist.sum()
    stats["entropy"] = float(-(prob * np.log2(prob)).sum())
    gy, gx = np.gradient(g)
    stats["edge_density"] = float(np.mean(np.hypot(gx, gy)))
    centred = g - g.mean()
    var = float((centred * centred).mean())
    if var > 1e-10:
        h_corr = float((centred[:, 1:] * centred[:, :-1]).mean() / var)
        v_corr = float((centred[1:, :] * centred[:-1, :]).mean() / var)
        stats["lag1_correlation"] = (h_corr + v_corr) / 2
        power = np.abs(np.fft.rfft2(centred)) ** 2
        power = power.ravel()[1:] + 1e-12
        stats["spectral_flatness"] = float(np.exp(np.mean(np.log(power))) / np.mean(power))
    else:
        stats["lag1_correlation"] = 1.0
        stats["spectral_flatness"] = 0.0
    if rgb is not None:
        small = np.asarray(Image.fromarray(rgb).resize((g.shape[1], g.shape[0])), np.float32) / 255.0
        mx, mn = small.max(axis=2), small.min(axis=2)
        lit = mx > 0.08
        stats["saturation"] = float(((mx - mn) / np.maximum(mx, 1e-6))[lit].mean()) if lit.any() else 0.0
    else:
        stats["saturation"] = 0.0
    return stats


@dataclass
class EmbeddingStats:
    """Training-set embedding statistics for the OOD score.

    Attributes:
        mean: ``(E,)`` mean embedding.
        components: ``(k, E)`` top principal directions.
        variances: ``(k,)`` variances along them.
        residual_variance: Mean variance of what the components leave out (per dimension).
        threshold: Score above which an image is out of domain.
        train_quantiles: Score quantiles (50, 90, 99, 99.5, 100) on the training images.
        photo_threshold: Stricter threshold for photo-like images (see :func:`photo_like`).
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    threshold: float
    train_quantiles: list[float]
    photo_threshold: float | None = None

    @classmethod
    def fit(
        cls, embeddings: np.ndarray, *, k: int = 32, quantile: float = 99.5, margin: float = 1.3
    ) -> EmbeddingStats:
        """Fits on ``(n, E)`` vectors; threshold = ``margin`` x the ``quantile``-th training score."""
        x = np.asarray(embeddings, np.float64)
        mean = x.mean(axis=0)
        centred = x - mean
        _, sing, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(k, vt.shape[0])
        variances = sing[:k] ** 2 / max(1, len(x) - 1)
        total = (centred**2).sum() / max(1, len(x) - 1)
        resid = max(float(total - variances.sum()) / max(1, x.shape[1] - k), 1e-8)
        stats = cls(mean, vt[:k], variances + 1e-8, resid, float("inf"), [])
        scores = stats.score(x)
        stats.train_quantiles = [float(np.percentile(scores, q)) for q in (50, 90, 99, 99.5, 100)]
        stats.threshold = float(np.percentile(scores, quantile) * margin)
        return stats

    def fit_photo_threshold(self, fraction: float = 0.85) -> float:
        """Sets :attr:`photo_threshold` to ``fraction`` x the training 99.5th-percentile score."""
        self.photo_threshold = float(fraction * self.train_quantiles[3])
        return self.photo_threshold

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Mean squared Mahalanobis distance per dimension (about 1 in distribution)."""
        x = np.atleast_2d(np.asarray(embeddings, np.float64)) - self.mean
        proj = x @ self.components.T
        inside = (proj**2 / self.variances).sum(axis=1)
        residual = ((x**2).sum(axis=1) - (proj**2).sum(axis=1)) / self.residual_variance
        return (inside + residual) / x.shape[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (rounded to keep the checkpoint JSON small)."""
        return {
            "mean": [round(float(v), 6) for v in self.mean],
            "components": [[round(float(v), 6) for v in row] for row in self.components],
            "variances": [float(v) for v in self.variances],
            "residual_variance": float(self.residual_variance),
            "threshold": float(self.threshold),
            "train_quantiles": [float(v) for v in self.train_quantiles],
            "photo_threshold": self.photo_threshold,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            mean=np.asarray(data["mean"], np.float64),
            components=np.asarray(data["components"], np.float64),
            variances=np.asarray(data["variances"], np.float64),
            residual_variance=float(data["residual_variance"]),
            threshold=float(data["threshold"]),
            train_quantiles=list(data.get("train_quantiles", [])),
            photo_threshold=data.get("photo_threshold"),
        )


def photo_like(stats: dict[str, float]) -> bool:
    """Whether an image lacks the dark surroundings of a cross-sectional head slice."""
    return (
        stats.get("border_dark", 1.0) < PHOTO_BORDER_DARK
        and stats.get("dark_fraction", 1.0) < PHOTO_DARK_FRACTION
    )


class Gate:
    """Decides whether an image is an in-domain medical image.

    Args:
        embedding_stats: Training statistics of the image embedding (``None``: not checked).
        trunk_stats: Training statistics of the pooled trunk features (``None``: not checked).
        photo: The learnt photo classifier (``None``: not checked).
    """

    def __init__(
        self,
        embedding_stats: EmbeddingStats | None = None,
        trunk_stats: EmbeddingStats | None = None,
        photo: PhotoClassifier | None = None,
    ) -> None:
        self.embedding_stats = embedding_stats
        self.trunk_stats = trunk_stats
        self.photo = photo

    def check_metadata(self, image: Any) -> GateResult | None:
        """The DICOM header's verdict, checked first (:func:`vlm.gate_meta.check_metadata`).

        Args:
            image: The input as given (a ``MedicalImage`` carries its header in ``meta``) or a ``meta`` dict.

        Returns:
            An ``out_of_domain`` result when the header says this is not a head CT/MR image, else ``None``.
        """
        return check_metadata(image)

    def check_statistics(self, stats: dict[str, float]) -> GateResult | None:
        """The verdict from image statistics alone, or ``None`` when they look like a medical slice."""
        if stats["std"] < BLANK_STD or stats["dynamic_range"] < BLANK_RANGE:
            return GateResult(False, "The image is blank (almost no intensity variation).", "blank", stats)
        if stats["saturation"] > COLOUR_SATURATION:
            return GateResult(
                False,
                "The image is a colour picture; radiology slices are grayscale. Not described.",
                "natural_photo",
                stats,
            )
        if stats["lag1_correlation"] < NOISE_LAG1 or stats["spectral_flatness"] > NOISE_FLATNESS:
            return GateResult(False, "The image looks like noise (no spatial structure).", "noise", stats)
        return None

    def decide(
        self, stats: dict[str, float], embedding: np.ndarray | None, trunk: np.ndarray | None = None
    ) -> GateResult:
        """Full verdict: statistics first, then the feature-space OOD scores."""
        verdict = self.check_statistics(stats)
        if verdict is not None:
            return verdict
        scores = dict(stats)
        out_of_domain = False
        for name, fitted, vector in (
            ("ood", self.embedding_stats, embedding),
            ("trunk_ood", self.trunk_stats, trunk),
        ):
            if fitted is None or vector is None:
                continue
            value = float(fitted.score(vector)[0])
            scores[f"{name}_score"] = value
            scores[f"{name}_threshold"] = fitted.threshold
            out_of_domain = out_of_domain or value > fitted.threshold
        if out_of_domain:
            return GateResult(
                False,
                "The image is unlike the medical images the model was trained on (head CT/MR slices); "
                "it is not described.",
                "out_of_domain",
                scores,
            )
        photo_threshold = self.trunk_stats.photo_threshold if self.trunk_stats is not None else None
        if (
            photo_threshold is not None
            and photo_like(stats)
            and scores.get("trunk_ood_score", 0.0) > photo_threshold
        ):
            scores["trunk_ood_photo_threshold"] = photo_threshold
            return GateResult(
                False,
                "The image looks like a photograph (no dark surroundings) and unlike the training images; "
                "it is not described.",
                "natural_photo",
                scores,
            )
        if self.photo is not None and embedding is not None and trunk is not None:
            prob = float(self.photo.probability(photo_features(stats, embedding, trunk))[0])
            scores["photo_gate_probability"] = prob
            scores["photo_gate_threshold"] = self.photo.threshold
            if prob < self.photo.threshold:
                return GateResult(
                    False,
                    "The image looks like a photograph, not a medical image (learnt photo gate); "
                    "it is not described.",
                    "natural_photo",
                    scores,
                )
        return GateResult(True, None, "medical", scores)
