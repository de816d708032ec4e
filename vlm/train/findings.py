"""Fitting the finding heads (:mod:`vlm.findings`) on MedPix 2.0 **train** images: ``zebra vlm fit-findings``.

Labels come from each image's own record in ``Descriptions.json``: ``Modality`` (CT / MR and the sequence or
contrast phase), ``Plane``, and the concepts of :data:`vlm.findings.TERMS_FILE` that its real caption mentions.
Images of the ``dev``/``test`` cases are refused. Protocol, all on the training images:

- features through the checkpoint's own inference path (:meth:`BuiltinVLM.predict`), standardised and
  projected on their first :data:`N_COMPONENTS` principal components;
- per head, scikit-learn's ``LogisticRegression`` (multinomial for modality, sequence and plane; one binary
  model per term with at least :data:`MIN_POSITIVES` positive images); the L2 strength is chosen from
  :data:`C_GRID` by 5-fold out-of-fold log-loss with folds grouped by case (all images of a case in one fold);
- a temperature per head (per term) fitted on the out-of-fold logits;
- a single-value head states its value when the value's own calibrated probability reaches
  :data:`TARGET_PRECISION` (a fact said should be right that often *at its own confidence*; a set-level rule,
  "90% of the stated values are right", let the confident majority carry doubtful values: it stated every
  modality, a head CT called MR at probability 0.74 included); the report gives the out-of-fold share stated
  and its accuracy;
- the term heads are stacked (:func:`fit_stacked_terms`): a second per-term logistic regression reads the first
  stage's out-of-fold term logits and the out-of-fold modality, sequence and plane probabilities (the words a
  caption uses depend on the modality and sequence, which the single-value heads know better than any one term
  head); it is cross-validated on the same case-grouped folds. The terms share one query threshold, the one
  with the best out-of-fold micro F1 of the caption policy (stated terms plus at most
  :data:`vlm.findings.MAX_POSSIBLE` hedged ones); they are stated from :data:`TERM_STATED`;
- final weights refitted on every training image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlm.findings import (
    MODALITIES,
    PLANES,
    SEQUENCES,
    FindingsModel,
    LinearHead,
    load_vocabulary,
    modality_class,
    plane_class,
    sequence_class,
)

log = logging.getLogger(__name__)

C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03)
#: Principal components of the standardised features the heads read.
N_COMPONENTS = 256
FOLDS = 5
MIN_POSITIVES = 12
#: Calibrated probability from which a single-value head states its value. The sequence head is the hardest
#: (11 classes from one slice); at 0.9 it would state 8% of the training images' sequences.
TARGET_PRECISION: dict[str, float] = {"modality": 0.9, "plane": 0.9, "sequence": 0.75}
#: Terms are said from this calibrated probability on ("more likely than not").
TERM_STATED = 0.5
TERM_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.71, 0.025), 3))
#: L2 strengths of the stacked term stage (few, standardised inputs: weaker penalties than the first stage).
STACK_C_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
#: The first stage of the stacked term heads (its outputs feed ``terms``; never stated itself).
BASE_TERMS = "terms_base"


@dataclass
class LabelledImage:
    """One MedPix image with its labels."""

    path: Path
    case_id: str
    split: str
    modality: str | None
    sequence: str | None
    plane: str | None
    caption: str
    terms: frozenset[str]


def read_medpix_images(root: str | Path, splits: Sequence[str]) -> list[LabelledImage]:
    """The shipped images of the cases of ``splits`` with their labels (module docstring).

    Raises:
        ConfigError: When the MedPix files are missing.
    """
    from zebra.errors import ConfigError

    root = Path(root).expanduser()
    try:
        descriptions = json.loads((root / "Descriptions.json").read_text(encoding="utf-8"))
        split_ids = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read MedPix 2.0 under {root}: {exc}.", hint="Pass --medpix.") from exc
    split_of = {str(u): s for s, ids in split_ids.items() for u in ids}
    vocab = load_vocabulary()
    out = []
    for d in descriptions:
        stem = str((d or {}).get("image") or "")
        path = root / "images" / f"{stem}.png"
        split = split_of.get(str(d.get("U_id")), "")
        if not stem or split not in splits or not path.is_file():
            continue
        desc = d.get("Description") if isinstance(d.get("Description"), dict) else {}
        caption = str(desc.get("Caption") or "")
        out.append(
            LabelledImage(
                path,
                str(d.get("U_id")),
                split,
                modality_class(desc.get("Modality")),
                sequence_class(desc.get("Modality")),
                plane_class(desc.get("Plane")),
                caption,
                frozenset(vocab.extract(caption)),
            )
        )
    return out


def image_features(vlm: Any, images: Sequence[LabelledImage], *, batch_size: int = 16) -> np.ndarray:
    """Finding-head features of each image through the checkpoint's own inference path."""
    from zebra_intake import load_study

    rows = []
    for start in range(0, len(images), batch_size):
        arrays = [load_study(str(im.path)).images[0].display for im in images[start : start + batch_size]]
        rows += [p.findings for p in vlm.predict(arrays, batch_size=batch_size)]
    return np.stack(rows).astype(np.float64)


def _group_folds(groups: Sequence[str], k: int, seed: int = 0) -> list[np.ndarray]:
    uniq = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: i % k for i, j in enumerate(order)}
    g = np.array([fold_of[x] for x in groups])
    return [np.flatnonzero(g == i) for i in range(k)]


def _fit_temperature(logits: np.ndarray, y: np.ndarray, kind: str) -> float:
    """The temperature with the lowest out-of-fold NLL (grid search; monotone in practice)."""
    best, best_t = np.inf, 1.0
    for t in np.exp(np.linspace(np.log(0.25), np.log(6.0), 60)):
        z = logits / t
        if kind == "softmax":
            z = z - z.max(1, keepdims=True)
            nll = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean()
        else:
            p = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
            nll = -(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)).mean()
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def _oof(
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    c: float,
    *,
    labelled: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold logits of every row (one column for two classes); fold models learn from the ``labelled``
    rows of the other folds (default: all rows; the ``y`` of the others is ignored)."""
    from sklearn.linear_model import LogisticRegression

    labelled = np.ones(len(y), dtype=bool) if labelled is None else np.asarray(labelled, dtype=bool)
    classes = np.unique(y[labelled])
    out = np.zeros((len(y), len(classes) if len(classes) > 2 else 1))
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        train = train[labelled[train]]
        seen = np.unique(y[train])
        if len(seen) < 2:
            # the training folds hold one class only: predict it, strongly
            if out.shape[1] == 1:
                out[held] = 8.0 if seen[0] == classes[-1] else -8.0
            else:
                out[held] = np.where(classes == seen[0], 8.0, -8.0)
            continue
        model = LogisticRegression(C=c, max_iter=2000).fit(x[train], y[train])
        z = model.decision_function(x[held]).reshape(len(held), -1)
        if out.shape[1] > 1 and len(seen) < len(classes):
            # classes absent from the training folds get a very low logit
            full = np.full((len(held), len(classes)), -30.0)
            full[:, np.searchsorted(classes, seen)] = z
            z = full
        out[held] = z
    return out


def _two_columns(z: np.ndarray) -> np.ndarray:
    """A binary model's single logit as softmax logits ``[0, z]``."""
    return np.concatenate([np.zeros_like(z), z], axis=1) if z.shape[1] == 1 else z


def fit_single_head(
    x: np.ndarray,
    labels: Sequence[str | None],
    classes: Sequence[str],
    groups: Sequence[str],
    *,
    target_precision: float = 0.9,
) -> tuple[LinearHead | None, dict[str, Any]]:
    """A calibrated multinomial head on the rows with a label (module docstring); ``None`` (skipped) when fewer
    than two classes are present."""
    from sklearn.linear_model import LogisticRegression

    keep = np.array([lab in classes for lab in labels])
    present = [c for c in classes if any(lab == c for lab in labels)]
    if len(present) < 2:
        return None, {"n": int(keep.sum()), "skipped": f"fewer than two classes present: {present}"}
    y = np.array([present.index(lab) for lab, k in zip(labels, keep, strict=True) if k])
    xk, gk = x[keep], [g for g, k in zip(groups, keep, strict=True) if k]
    folds = _group_folds(gk, FOLDS)
    scores = {}
    for c in C_GRID:
        z = _two_columns(_oof(xk, y, folds, c))
        t = _fit_temperature(z, y, "softmax")
        zz = z / t - (z / t).max(1, keepdims=True)
        scores[c] = (float(-(zz[np.arange(len(y)), y] - np.log(np.exp(zz).sum(1))).mean()), z, t)
    best_c = min(scores, key=lambda c: scores[c][0])
    nll, z, t = scores[best_c]
    p = np.exp(z / t - (z / t).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pred, conf = p.argmax(1), p.max(1)
    threshold = float(target_precision)
    final = LogisticRegression(C=best_c, max_iter=3000).fit(xk, y)
    coef, intercept = final.coef_.astype(np.float64), final.intercept_.astype(np.float64)
    if len(present) == 2:  # binary: class 1's logit against a zero for class 0
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    head = LinearHead(
        classes=tuple(present),
        coef=coef,
        intercept=intercept,
        temperature=np.array([t]),
        threshold=threshold,
    )
    stated = conf >= threshold
    report = {
        "n": len(y),
        "C": best_c,
        "temperature": round(t, 4),
        "threshold": threshold,
        "oof_nll": round(nll, 4),
        "oof_accuracy": round(float((pred == y).mean()), 4),
        "oof_stated_share": round(float(stated.mean()), 4),
        "oof_stated_accuracy": round(float((pred[stated] == y[stated]).mean()) if stated.any() else 0.0, 4),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(present)},
    }
    return head, report


def oof_probabilities(
    x: np.ndarray,
    labels: Sequence[str | None],
    head: LinearHead,
    c: float,
    groups: Sequence[str],
) -> np.ndarray:
    """Out-of-fold calibrated probabilities of a single-value head for **every** row (labelled or not): the
    inputs a stacked head sees at training time for images the head was not fitted on.

    Same case-grouped folds as the fit; a fold model is fitted on the labelled rows of the other folds with the
    head's L2 strength, and its logits are divided by the head's temperature.
    """
    classes = list(head.classes)
    keep = np.array([lab in classes for lab in labels])
    y = np.array([classes.index(lab) if k else 0 for lab, k in zip(labels, keep, strict=True)])
    z = _two_columns(_oof(x, y, _group_folds(groups, FOLDS), c, labelled=keep)) / float(head.temperature[0])
    z -= z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def caption_policy(
    p: np.ndarray, query_threshold: float, groups: Sequence[str] = (), *, stated: float = TERM_STATED
) -> np.ndarray:
    """Which terms the caption says per row, as a mask: the stated ones and those
    :func:`vlm.findings.possible_terms` hedges (the same function as at inference, so the threshold is chosen for
    the policy the user reads)."""
    from vlm.findings import possible_terms
    from vlm.types import Findings, FindingValue

    said = p >= stated
    for r, row in enumerate(p):
        terms = [
            FindingValue(
                str(j),
                float(row[j]),
                groups[j] if len(groups) else "",
                bool(said[r, j]),
                bool(row[j] >= query_threshold),
            )
            for j in np.argsort(-row, kind="stable")  # most probable first, as the findings list them
        ]
        for name in possible_terms(Findings(terms=terms)):
            said[r, int(name)] = True
    return said


def _binary_heads_oof(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], grid: Sequence[float]
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """One binary head per column of ``y``: the L2 strength of ``grid`` with the lowest summed out-of-fold
    log-loss (one strength for every term: a per-term choice overfits rare terms), a temperature per term.

    Returns:
        ``(nll, C, out-of-fold calibrated probabilities (N, K), temperatures (K,))``.
    """
    folds = _group_folds(groups, FOLDS)
    best = None
    for c in grid:
        z = np.concatenate([_oof(x, y[:, j].astype(int), folds, c) for j in range(y.shape[1])], axis=1)
        temps = np.array([_fit_temperature(z[:, j], y[:, j], "sigmoid") for j in range(y.shape[1])])
        p = 1 / (1 + np.exp(-np.clip(z / temps, -40, 40)))
        nll = float(-(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)).mean())
        if best is None or nll < best[0]:
            best = (nll, c, p, temps)
    assert best is not None
    return best


def _refit_binary_heads(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (K, D), intercept (K,))`` of one binary head per column of ``y``, fitted on every row."""
    from sklearn.linear_model import LogisticRegression

    models = [LogisticRegression(C=c, max_iter=3000).fit(x, y[:, j].astype(int)) for j in range(y.shape[1])]
    return np.stack([m.coef_[0] for m in models]), np.array([m.intercept_[0] for m in models])


def _term_head(
    names: Sequence[str],
    groups: Sequence[str],
    coef: np.ndarray,
    intercept: np.ndarray,
    temps: np.ndarray,
    query_threshold: float,
    inputs: Sequence[str] = (),
) -> LinearHead:
    """A sigmoid term head stated from :data:`TERM_STATED`, cues from ``query_threshold``."""
    return LinearHead(
        classes=tuple(names),
        coef=coef,
        intercept=intercept,
        temperature=temps,
        threshold=TERM_STATED,
        kind="sigmoid",
        groups=tuple(groups),
        query_threshold=query_threshold,
        inputs=tuple(inputs),
    )


def fit_stacked_terms(
    base_logits: np.ndarray,
    context: Sequence[np.ndarray],
    y: np.ndarray,
    groups: Sequence[str],
    *,
    names: Sequence[str],
    term_groups: Sequence[str],
    inputs: Sequence[str],
) -> tuple[LinearHead, dict[str, Any], np.ndarray]:
    """The second stage of the term heads (module docstring).

    Args:
        base_logits: ``(N, K)`` out-of-fold calibrated logits of the first-stage term heads.
        context: Out-of-fold probabilities of the single-value heads, in the order of ``inputs[1:]``.
        y: ``(N, K)`` 0/1 term labels. groups: Case id per row (folds).
        names, term_groups: The terms and their vocabulary groups. inputs: Head names the stacked head reads.

    Returns:
        The head (standardisation folded into its weights), its report and the out-of-fold probabilities.
    """

    z_in = np.concatenate([base_logits, *context], axis=1)
    mu, sd = z_in.mean(0), z_in.std(0) + 1e-6
    xs = (z_in - mu) / sd
    nll, c, p, temps = _binary_heads_oof(xs, y, groups, STACK_C_GRID)
    f1s = {
        float(t): _micro_f1(caption_policy(p, t, term_groups), y) for t in TERM_THRESHOLDS if t < TERM_STATED
    }
    threshold = max(f1s, key=lambda t: f1s[t])
    w, b = _refit_binary_heads(xs, y, c)
    coef, intercept = w / sd, b - (w * mu / sd).sum(1)  # fold the standardisation into the weights
    head = _term_head(names, term_groups, coef, intercept, temps, threshold, inputs)
    said = caption_policy(p, threshold, term_groups)
    report = {
        "C": c,
        "oof_nll": round(nll, 4),
        "query_threshold": threshold,
        "oof_micro_f1_caption_policy": round(f1s[threshold], 4),
        "oof_precision_caption_policy": round(float((said & (y > 0)).sum() / max(said.sum(), 1)), 4),
        "oof_terms_said_per_image": round(float(said.sum(1).mean()), 3),
        "oof_micro_f1_stated": round(_micro_f1(p >= TERM_STATED, y), 4),
        "oof_precision_stated": round(
            float(((p >= TERM_STATED) & (y > 0)).sum() / max((p >= TERM_STATED).sum(), 1)), 4
        ),
    }
    return head, report, p


def _micro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp, fp, fn = (pred & (y > 0)).sum(), (pred & (y == 0)).sum(), (~pred & (y > 0)).sum()
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def fit_term_head(
    x: np.ndarray, terms: Sequence[frozenset[str]], groups: Sequence[str]
) -> tuple[LinearHead, dict[str, Any], np.ndarray]:
    """One calibrated binary head per frequent term; one shared threshold (module docstring).

    Returns:
        The head, its report, and its out-of-fold calibrated probabilities ``(N, K)`` (for the stacked stage).
    """

    vocab = load_vocabulary()
    # a term needs positives and negatives to be learnt
    names = [
        n for n in vocab.names if MIN_POSITIVES <= sum(n in t for t in terms) <= len(terms) - MIN_POSITIVES
    ]
    y = np.array([[n in t for n in names] for t in terms], dtype=np.float64)
    nll, c, p, temps = _binary_heads_oof(x, y, groups, C_GRID)
    f1s = {float(thr): _micro_f1(p >= thr, y) for thr in TERM_THRESHOLDS}
    threshold = max(f1s, key=lambda t: f1s[t])
    coef, intercept = _refit_binary_heads(x, y, c)
    head = _term_head(names, [vocab.group_of(n) for n in names], coef, intercept, temps, threshold)
    report = {
        "n_images": len(y),
        "n_terms": len(names),
        "C": c,
        "oof_nll": round(nll, 4),
        "query_threshold": threshold,
        "oof_micro_f1_at_query_threshold": round(f1s[threshold], 4),
        "stated_threshold": TERM_STATED,
        "oof_micro_f1_stated": round(_micro_f1(p >= TERM_STATED, y), 4),
        "oof_precision_stated": round(
            float(((p >= TERM_STATED) & (y > 0)).sum() / max((p >= TERM_STATED).sum(), 1)), 4
        ),
        "positives": {n: int(y[:, j].sum()) for j, n in enumerate(names)},
    }
    return head, report, p


def fit_findings(vlm: Any, medpix: str | Path, *, split: str = "train") -> FindingsModel:
    """Fits every head on the images of ``split`` (module docstring).

    Raises:
        ConfigError: For ``dev``/``test`` or when no image is found.
    """
    import datetime as _dt

    from zebra.errors import ConfigError

    if split in ("dev", "test", "valid", "val"):
        raise ConfigError(f"Refusing to fit the finding heads on the {split} split.", hint="Use train.")
    images = read_medpix_images(medpix, [split])
    if len(images) < 50:
        raise ConfigError(f"Only {len(images)} MedPix {split} images found under {medpix}.", hint="Check it.")
    log.info("finding heads: %d %s images", len(images), split)
    raw = image_features(vlm, images)
    mean = raw.mean(0)
    scale = raw.std(0) + 1e-6
    # principal components of the standardised training features: fewer, decorrelated inputs make the
    # regressions fast and better conditioned (the projection is stored with the heads)
    z = (raw - mean) / scale
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    # not whitened: the L2 penalty then acts as on the standardised features (whitening amplified noise
    # directions and lost 5-8 points of out-of-fold accuracy on the plane and modality heads)
    proj = vt[: min(N_COMPONENTS, vt.shape[0])].T
    x = z @ proj
    groups = [im.case_id for im in images]
    heads, reports = {}, {}
    context, inputs = [], [BASE_TERMS]
    for name, classes, labels in (
        ("modality", MODALITIES, [im.modality for im in images]),
        ("sequence", SEQUENCES, [im.sequence for im in images]),
        ("plane", PLANES, [im.plane for im in images]),
    ):
        head, reports[name] = fit_single_head(
            x, labels, classes, groups, target_precision=TARGET_PRECISION[name]
        )
        if head is not None:
            heads[name] = head
            context.append(oof_probabilities(x, labels, head, reports[name]["C"], groups))
            inputs.append(name)
        log.info("finding head %s: %s", name, reports[name])
    base, reports[BASE_TERMS], p_base = fit_term_head(x, [im.terms for im in images], groups)
    heads[BASE_TERMS] = base
    log.info(
        "finding terms, first stage: %s", {k: v for k, v in reports[BASE_TERMS].items() if k != "positives"}
    )
    y = np.array([[n in im.terms for n in base.classes] for im in images], dtype=np.float64)
    base_logits = np.log(np.clip(p_base, 1e-9, 1)) - np.log(np.clip(1 - p_base, 1e-9, 1))
    heads["terms"], reports["terms"], _ = fit_stacked_terms(
        base_logits, context, y, groups, names=base.classes, term_groups=base.groups, inputs=inputs
    )
    reports["terms"]["positives"] = reports[BASE_TERMS]["positives"]
    log.info("finding terms, stacked: %s", {k: v for k, v in reports["terms"].items() if k != "positives"})
    meta = {
        "fitted": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
        "data": {
            "medpix": "MedPix 2.0 " + split + " images (Descriptions.json: Modality, Plane, Caption)",
            "n_images": len(images),
            "n_cases": len(set(groups)),
        },
        "protocol": "scikit-learn LogisticRegression per head; C by 5-fold case-grouped out-of-fold log-loss; "
        "temperature and thresholds on out-of-fold probabilities (vlm.train.findings)",
        "cv": reports,
    }
    return FindingsModel(mean, scale, heads, meta, proj=proj)


def write_findings(checkpoint: Path, model: FindingsModel) -> dict[str, Any]:
    """Saves the weights beside ``checkpoint`` and records the block in its JSON."""
    from vlm.checkpoint import read_meta, sidecar, write_json

    checkpoint = Path(checkpoint)
    weights = checkpoint.with_name(f"{checkpoint.stem}.findings.safetensors")
    block = model.save(weights)
    write_json(sidecar(checkpoint), {**read_meta(checkpoint), "findings": block})
    return block
