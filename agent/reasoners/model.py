"""The builtin reasoner's scoring model: a conditional logit over candidates with a "none of them" option.

For one case with candidate feature vectors ``x_1..x_n`` (standardised with the training mean and standard
deviation), the logits are ``s_i = w . x_i`` and ``s_0 = b`` for "the right diagnosis is not among the
candidates". Probabilities are ``softmax([s_1..s_n, s_0] / T)``: they sum to 1 with the null option, so the
candidates' probabilities sum to at most 1. ``w`` and ``b`` are fitted by L2-regularised maximum likelihood
(the likelihood of a case is the probability mass of the candidates judged the same diagnosis as the gold
label, or of the null option when none is); the temperature ``T`` is fitted afterwards on out-of-fold logits
(temperature scaling), see :mod:`agent.fit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


@dataclass
class ConditionalLogit:
    """Parameters and inference of the model (module docstring).

    Attributes:
        features: Feature names, in vector order.
        mean: Standardisation means. std: Standardisation deviations (1 where a feature is constant).
        weights: ``w``. null_bias: ``b``. temperature: ``T``.
    """

    features: list[str]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    null_bias: float = 0.0
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Candidate logits ``w . z`` (before the temperature), then the null logit last."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, len(self.features))
        z = (x - self.mean) / self.std
        return np.concatenate([z @ self.weights, [self.null_bias]])

    def probabilities(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(candidate probabilities, null probability)``."""
        p = _softmax(self.logits(x) / self.temperature)
        return p[:-1], float(p[-1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "weights": [float(v) for v in self.weights],
            "null_bias": float(self.null_bias),
            "temperature": float(self.temperature),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], expected: Sequence[str] | None = None) -> ConditionalLogit:
        """Inverse of :meth:`to_dict`; ``expected`` features are reordered/filled (missing ones weigh 0).

        Raises:
            ValueError: When the lists differ in length.
        """
        names = [str(n) for n in data["features"]]
        mean, std, w = (np.asarray(data[k], dtype=np.float64) for k in ("mean", "std", "weights"))
        if not (len(names) == len(mean) == len(std) == len(w)):
            raise ValueError("features, mean, std and weights differ in length")
        if expected is not None and list(expected) != names:
            pos = {n: i for i, n in enumerate(names)}
            mean = np.array([mean[pos[n]] if n in pos else 0.0 for n in expected])
            std = np.array([std[pos[n]] if n in pos else 1.0 for n in expected])
            w = np.array([w[pos[n]] if n in pos else 0.0 for n in expected])
            names = list(expected)
        std = np.where(std > 0, std, 1.0)
        return cls(
            features=names,
            mean=mean,
            std=std,
            weights=w,
            null_bias=float(data.get("null_bias", 0.0)),
            temperature=float(data.get("temperature", 1.0)) or 1.0,
        )


# ------------------------------------------------------------------------------------------- fitting
@dataclass
class Case:
    """One training case: candidate features and which candidates match the gold label."""

    x: np.ndarray
    correct: np.ndarray  # bool (n,)


def _case_loss_grad(
    w: np.ndarray, b: float, z: np.ndarray, correct: np.ndarray
) -> tuple[float, np.ndarray, float]:
    logits = np.concatenate([z @ w, [b]]) if len(z) else np.array([b])
    p = _softmax(logits)
    target = np.concatenate([correct, [not correct.any()]]).astype(bool)
    mass = p[target].sum()
    q = np.where(target, p / max(mass, 1e-300), 0.0)
    g = p - q
    grad_w = z.T @ g[:-1] if len(z) else np.zeros_like(w)
    return -float(np.log(max(mass, 1e-300))), grad_w, float(g[-1])


class _Stacked:
    """The cases' standardised candidate rows stacked into one matrix, for a vectorised objective."""

    def __init__(self, zs: Sequence[np.ndarray], cases: Sequence[Case], dim: int) -> None:
        sizes = np.array([len(z) for z in zs], dtype=np.int64)
        self.has = sizes > 0
        self.z = np.concatenate([z for z in zs if len(z)]) if self.has.any() else np.zeros((0, dim))
        self.correct = (
            np.concatenate([np.asarray(c.correct, dtype=bool) for c in cases if len(c.x)])
            if self.has.any()
            else np.zeros(0, dtype=bool)
        )
        self.starts = np.concatenate([[0], np.cumsum(sizes[self.has])[:-1]]).astype(np.int64)
        self.seg = np.repeat(np.arange(int(self.has.sum())), sizes[self.has])
        # cases whose right answer is "none of the candidates" (with candidates; the others have no loss)
        self.null_target = (
            np.logical_not(np.logical_or.reduceat(self.correct, self.starts))
            if len(self.correct)
            else np.zeros(0, dtype=bool)
        )

    def loss_grad(self, w: np.ndarray, b: float) -> tuple[float, np.ndarray, float]:
        """Summed negative log-likelihood and its gradient (cases without candidates contribute 0)."""
        if not len(self.z):
            return 0.0, np.zeros_like(w), 0.0
        s = self.z @ w
        m = np.maximum(np.maximum.reduceat(s, self.starts), b)
        e = np.exp(s - m[self.seg])
        eb = np.exp(b - m)
        total = np.add.reduceat(e, self.starts) + eb
        target = np.add.reduceat(np.where(self.correct, e, 0.0), self.starts) + np.where(
            self.null_target, eb, 0.0
        )
        target = np.maximum(target, 1e-300 * total)
        loss = float(np.sum(np.log(total) - np.log(target)))
        g = e / total[self.seg] - np.where(self.correct, e / target[self.seg], 0.0)
        gb = float(np.sum(eb / total - np.where(self.null_target, eb / target, 0.0)))
        return loss, self.z.T @ g, gb


def fit_weights(
    cases: Sequence[Case], feature_names: Sequence[str], *, l2: float = 1.0, max_iter: int = 500
) -> ConditionalLogit:
    """Fits ``w`` and ``b`` by L2-regularised maximum likelihood (L-BFGS); ``T = 1``.

    Args:
        cases: Training cases.
        feature_names: Names of the feature columns.
        l2: Strength of the penalty ``l2 / 2 * |w|^2`` (per case, so it does not shrink with more data).
        max_iter: L-BFGS iterations.
    """
    from scipy.optimize import minimize

    rows = [c.x for c in cases if len(c.x)]
    stacked = np.concatenate(rows) if rows else np.zeros((1, len(feature_names)))
    mean = stacked.mean(axis=0)
    std = stacked.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    dim = len(feature_names)
    zs = [((c.x - mean) / std) if len(c.x) else np.zeros((0, dim)) for c in cases]
    data = _Stacked(zs, cases, dim)
    n = max(len(cases), 1)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:dim], theta[dim]
        loss, gw, gb = data.loss_grad(w, float(b))
        loss = loss / n + 0.5 * l2 * float(w @ w) / n
        grad = np.concatenate([gw / n + l2 * w / n, [gb / n]])
        return loss, grad

    result = minimize(
        objective, np.zeros(dim + 1), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    theta = result.x
    return ConditionalLogit(
        features=list(feature_names),
        mean=mean,
        std=std,
        weights=theta[:dim],
        null_bias=float(theta[dim]),
        temperature=1.0,
        info={"converged": bool(result.success), "train_nll": float(result.fun)},
    )


def fit_temperature(logits: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """The temperature minimising the negative log-likelihood of held-out logits (temperature scaling).

    Args:
        logits: Per case, candidate logits then the null logit.
        targets: Per case, a boolean mask over the same positions (the null position true when no candidate
            is right).
    """
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        t = float(np.exp(log_t))
        total = 0.0
        for z, mask in zip(logits, targets, strict=True):
            p = _softmax(np.asarray(z) / t)
            total -= float(np.log(max(p[np.asarray(mask, dtype=bool)].sum(), 1e-300)))
        return total / max(len(logits), 1)

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
