"""A learnt photo-vs-medical classifier for the input gate (the ``gate_photo`` block of the checkpoint JSON).

The rule-based gate (:mod:`vlm.gate`) catches colour photographs by their saturation, but a photograph
converted to grayscale has none, and the feature-space OOD scores let some through. This is a small
L2-regularised logistic regression on what the model computes anyway for every image: the pooled trunk
features, the embedding and the cheap image statistics. It is fitted on medical *training* images
(positives) against augmented natural photographs and procedural synthetic images that are not part of any
evaluation set (see :mod:`vlm.train.gate_negatives`). Its threshold on P(medical) is the 0.5th percentile of
held-out positive training images, so about 99.5% of in-domain images pass it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Image statistics used as features (saturation is left out: colour is already rejected by a rule).
STAT_KEYS: tuple[str, ...] = (
    "std",
    "dynamic_range",
    "dark_fraction",
    "border_dark",
    "entropy",
    "edge_density",
    "lag1_correlation",
    "spectral_flatness",
)


def photo_features(stats: dict[str, float], embedding: np.ndarray, trunk: np.ndarray) -> np.ndarray:
    """One feature vector: pooled trunk features, embedding and :data:`STAT_KEYS` statistics (float64)."""
    values = [float(stats.get(k, 0.0)) for k in STAT_KEYS]
    return np.concatenate(
        [np.ravel(trunk).astype(np.float64), np.ravel(embedding).astype(np.float64), np.asarray(values)]
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class PhotoClassifier:
    """Logistic regression P(medical | features) on standardised features.

    Attributes:
        mean: ``(D,)`` feature means of the fit set.
        scale: ``(D,)`` feature standard deviations of the fit set (floored).
        weights: ``(D,)`` coefficients on standardised features.
        bias: Intercept.
        threshold: Images with P(medical) below it are rejected as photographs.
        info: Provenance (fit sizes, held-out acceptance, ...), JSON-safe.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iterations: int = 25) -> PhotoClassifier:
        """Fits by Newton's method (IRLS) with class-balanced sample weights.

        Args:
            x: ``(n, D)`` features.
            y: ``(n,)`` labels, 1 = medical, 0 = photograph / synthetic.
            l2: Ridge penalty on the standardised weights (not on the bias), relative to a unit total
                sample weight per class.
            iterations: Newton steps (it converges in well under 25 for a strictly convex problem).
        """
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        if x.ndim != 2 or len(x) != len(y) or not (0 < y.sum() < len(y)):
            raise ValueError("fit needs (n, D) features and labels of both classes")
        mean = x.mean(axis=0)
        scale = np.maximum(x.std(axis=0), 1e-6)
        z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        # Each class weighs 1 in total, so the penalty means the same whatever the class sizes.
        sw = np.where(y > 0.5, 1.0 / y.sum(), 1.0 / (len(y) - y.sum()))
        penalty = np.full(z.shape[1], l2 / len(x))
        penalty[-1] = 0.0
        beta = np.zeros(z.shape[1])
        for _ in range(iterations):
            p = _sigmoid(z @ beta)
            grad = z.T @ (sw * (p - y)) + penalty * beta
            hess = (z * (sw * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            beta -= step
            if float(np.abs(step).max()) < 1e-8:
                break
        return cls(mean, scale, beta[:-1], float(beta[-1]))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(medical) for ``(n, D)`` (or ``(D,)``) features."""
        z = (np.atleast_2d(np.asarray(x, np.float64)) - self.mean) / self.scale
        return _sigmoid(z @ self.weights + self.bias)

    def fit_threshold(self, positives: np.ndarray, *, accept: float = 0.995) -> float:
        """Sets :attr:`threshold` so that a share ``accept`` of the ``positives`` features passes."""
        probs = self.probability(positives)
        self.threshold = float(np.percentile(probs, 100 * (1 - accept), method="lower"))
        return self.threshold

    def rejects(self, x: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: P(medical) below the threshold."""
        return self.probability(x) < self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "kind": "logistic_regression",
            "features": "trunk + embedding + stats",
            "stats": list(STAT_KEYS),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "weights": [float(v) for v in self.weights],
            "bias": float(self.bias),
            "threshold": float(self.threshold),
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhotoClassifier:
        """Inverse of :meth:`to_dict`."""
        return cls(
            mean=np.asarray(data["mean"], np.float64),
            scale=np.asarray(data["scale"], np.float64),
            weights=np.asarray(data["weights"], np.float64),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            info=dict(data.get("info", {})),
        )


def fit_photo_classifier(
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    seed: int = 0,
    held_out: float = 0.2,
    accept: float = 0.995,
    l2: float = 1.0,
) -> PhotoClassifier:
    """Fits on a seeded ``1 - held_out`` share of both classes; the threshold comes from the held-out positives.

    The returned classifier is the one fitted on the fit part (the threshold belongs to it). ``info`` records
    the sizes and the held-out acceptance / rejection rates.

    Args:
        positives: ``(n1, D)`` features of medical training images.
        negatives: ``(n0, D)`` features of photographs / synthetic images.
        seed: Split seed.
        held_out: Share of each class held out (threshold and the reported rates).
        accept: Share of held-out positives that must pass.
        l2: Ridge penalty (see :meth:`PhotoClassifier.fit`).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for data in (positives, negatives):
        order = rng.permutation(len(data))
        cut = max(1, round(held_out * len(data)))
        parts.append((data[order[cut:]], data[order[:cut]]))
    (pos_fit, pos_held), (neg_fit, neg_held) = parts
    x = np.vstack([pos_fit, neg_fit])
    y = np.concatenate([np.ones(len(pos_fit)), np.zeros(len(neg_fit))])
    model = PhotoClassifier.fit(x, y, l2=l2)
    model.fit_threshold(pos_held, accept=accept)
    model.info = {
        "fit": {"positives": len(pos_fit), "negatives": len(neg_fit)},
        "held_out": {"positives": len(pos_held), "negatives": len(neg_held)},
        "held_out_accepted": float(np.mean(~model.rejects(pos_held))),
        "held_out_negatives_rejected": float(np.mean(model.rejects(neg_held))),
        "fit_accepted": float(np.mean(~model.rejects(pos_fit))),
        "accept_target": accept,
        "l2": l2,
        "seed": seed,
    }
    return model
