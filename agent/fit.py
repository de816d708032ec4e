"""Fitting the builtin reasoner on visible training data only: ``zebra agent fit``.

Data: the cases of one MedPix 2.0 split (``train``; never ``dev``), with the inputs the agent gets at
evaluation time from the NOVA conversion of MedPix: the clinical history (``History`` plus ``Exam``) and the
captions of the case's described images (the NOVA conversion keeps only images shipped as PNG, but most training
cases ship without their PNG files, and their captions are the same kind of text); the gold label is ``Case Diagnosis`` (else the topic
title). Each case is run through the agent's own planning, retrieval and candidate code
(:mod:`agent.evidence`, :mod:`agent.features`) against the bundle, *leaving the case out*: its own documents
(``doc_id`` ``<source>:case/<U_id>`` and any chunk whose ``case_id`` is the case) never appear in its hits.
A candidate is correct when :func:`retrieval.diagnosis.same_diagnosis` says it names the gold diagnosis. When the
bundle has an image index, the case's shipped PNG images are searched too (its own images excluded), so the
image features (similar-image and image -> text support) get fitted weights; without one they stay at 0.

Model (:mod:`agent.reasoners.model`): the L2 strength is chosen by 5-fold cross-validated log-likelihood;
the temperature is fitted on the out-of-fold logits of that choice; the final weights are refitted on all
cases. The out-of-fold probabilities give the reported calibration (NLL, ECE, top-1/top-5 accuracy) and the
risk-control table of :mod:`agent.risk`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentConfigError
from agent.evidence import plan_queries, retrieve
from agent.features import FEATURES, build_candidates, feature_matrix
from agent.reasoners.model import Case, ConditionalLogit, _softmax, fit_temperature, fit_weights
from agent.risk import risk_table, threshold_for

log = logging.getLogger(__name__)

#: L2 strengths tried.
L2_GRID: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
FOLDS = 5
#: Target risks listed in the weights file (the default is :data:`DEFAULT_RISK`).
RISKS: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
DEFAULT_RISK = 0.4
DELTA = 0.1


@dataclass
class FitCase:
    """One training case."""

    case_id: str
    history: str
    captions: list[str]
    gold: str
    images: list[str] = field(default_factory=list)
    findings: str = ""


def load_tumour_cases(root: str | Path, per_class: int = 60, seed: int = 0) -> list[FitCase]:
    """Image-only fit cases from a brain-tumour set's **train** split: ``per_class`` images of each class
    (glioma, meningioma, pituitary adenoma, no tumour), drawn with ``seed``; the gold diagnosis is the class.

    They give the ``image_diagnosis`` feature its weight: on MedPix images the tumour-type head is silent.
    The head was fitted on these same images, so it is more confident on them than on new ones (docs/agent.md).

    Raises:
        ConfigError: As :func:`vlm.train.tumour_type.read_tumour_images` (``valid``/``test`` are refused).
    """
    from vlm.train.tumour_type import read_tumour_images

    images = read_tumour_images(root, "train")
    rng = np.random.default_rng(seed)
    out = []
    for label in sorted({im.label for im in images if im.label is not None}):
        rows = [im for im in images if im.label == label]
        for i in sorted(rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)):
            im = rows[int(i)]
            out.append(FitCase(im.path.stem, "", [], label, [str(im.path)]))
    return out


def _clean(value: Any) -> str:
    from zebra_datasets.text import clean_text

    return clean_text(value) or ""


def load_medpix_cases(root: str | Path, split: str = "train") -> list[FitCase]:
    """The training cases of ``split`` (module docstring); :func:`read_medpix_cases` without the guard.

    Raises:
        AgentConfigError: For the ``dev``/``test`` split (never fit on them) or missing files.
    """
    if split in ("dev", "test"):
        raise AgentConfigError(
            f"Refusing to fit on the {split} split.", hint="Fit on --split train; dev is for evaluation only."
        )
    return read_medpix_cases(root, split)


def read_medpix_cases(root: str | Path, split: str) -> list[FitCase]:
    """The cases of ``split`` with their history, captions, image files and gold label (module docstring).

    Raises:
        AgentConfigError: When files are missing or the split is unknown or empty.
    """
    root = Path(root).expanduser()
    try:
        cases = json.loads((root / "Case_topic.json").read_text(encoding="utf-8"))
        descriptions = json.loads((root / "Descriptions.json").read_text(encoding="utf-8"))
        splits = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AgentConfigError(
            f"Cannot read MedPix 2.0 under {root}: {exc}.", hint="Pass the MedPix 2.0 folder with --medpix."
        ) from exc
    if split not in splits:
        raise AgentConfigError(f"No split {split!r} in {root / 'splits.json'}.", hint="Use --split train.")
    wanted = {str(u) for u in splits[split]}
    captions: dict[str, str] = {}
    by_case: dict[str, list[str]] = {}
    for d in descriptions:
        stem = str((d or {}).get("image") or "").strip()
        if stem:
            captions[stem] = _clean(
                ((d.get("Description") or {}) if isinstance(d.get("Description"), dict) else {}).get(
                    "Caption"
                )
            )
            by_case.setdefault(str(d.get("U_id") or ""), []).append(stem)
    out: list[FitCase] = []
    for entry in cases:
        uid = str((entry or {}).get("U_id") or "")
        if uid not in wanted:
            continue
        case = entry.get("Case") if isinstance(entry.get("Case"), dict) else {}
        topic = entry.get("Topic") if isinstance(entry.get("Topic"), dict) else {}
        gold = _clean(case.get("Case Diagnosis")) or _clean(topic.get("Title"))
        history = _clean(case.get("History"))
        exam = _clean(case.get("Exam"))
        if exam:
            history = f"{history}\nExam: {exam}" if history else f"Exam: {exam}"
        stems = list(
            dict.fromkeys([*(entry.get("TAC") or []), *(entry.get("MRI") or []), *by_case.get(uid, [])])
        )
        present = [s for s in stems if (root / "images" / f"{s}.png").is_file()]
        # captions of every described image: most training cases ship without their PNG files
        caps = list(dict.fromkeys(c for s in stems if (c := captions.get(s))))
        if not gold or not (history or caps):
            continue
        out.append(
            FitCase(
                uid,
                history,
                caps,
                gold,
                [str(root / "images" / f"{s}.png") for s in present],
                findings=_clean(case.get("Findings")),
            )
        )
    if not out:
        raise AgentConfigError(f"No usable case in split {split!r} under {root}.", hint="Check the data set.")
    return out


def _case_images(case: FitCase, max_images: int) -> list[Any]:
    """The case's shipped images (display arrays), at most ``max_images``; unreadable ones are skipped."""
    from zebra_intake import load_study

    out = []
    for path in case.images[:max_images]:
        try:
            out.append(load_study(path).images[0].display)
        except Exception as exc:  # an unreadable image costs only itself
            log.warning("case %s: image %s unreadable: %s", case.case_id, path, exc)
    return out


def image_entries(vlm: Any, images: Sequence[Any]) -> list[dict[str, Any]]:
    """What the ``perceive`` node records for each image (gate verdict, caption, attributes, findings)."""
    out = []
    for i, image in enumerate(images):
        data = vlm.analyze_image(image).to_dict()
        accepted = bool(data["gate"]["accepted"])
        out.append(
            {
                "index": i,
                "id": f"M{i + 1}" if accepted else None,
                "accepted": accepted,
                "gate": data["gate"],
                "caption": data.get("caption"),
                "attributes": data.get("attributes"),
                "findings": data.get("findings"),
            }
        )
    return out


#: Input settings of the fit rows: ``text`` = history + captions (+ image search when the bundle has an image
#: index); ``history`` = the history alone; ``image`` = history + the images through the VLM (findings, region)
#: and the image search, no caption.
FIT_SETTINGS: tuple[str, ...] = ("text", "history", "image")


def case_features(
    searcher: Any,
    case: FitCase,
    *,
    setting: str = "text",
    vlm: Any = None,
    n_hits: int = 30,
    max_candidates: int = 20,
    image_k: int = 10,
    max_images: int = 4,
    mode: str = "hybrid",
    source: str = "medpix",
) -> dict[str, Any]:
    """Candidates and correctness of one case in one input setting, leaving the case out (module docstring).

    When the bundle has an image index, the case's shipped images are searched too (image -> images and
    image -> text, the case's own images and documents excluded), so the image features get fitted weights.
    In the ``image`` setting the images also go through ``vlm`` (its findings join the queries, and the
    region and finding-agreement features are computed) and the captions are left out.
    """
    from agent.evidence import finding_terms, imaged_region, perception_text, tumour_types
    from retrieval.diagnosis import DiagnosisMatcher

    has_images = getattr(searcher.bundle, "image_index", None) is not None
    use_images = setting == "image" or (setting == "text" and has_images)
    images = _case_images(case, max_images) if use_images and case.images else []
    entries = image_entries(vlm, images) if setting == "image" and vlm is not None else []
    captions = case.captions if setting == "text" else []
    queries = plan_queries(
        question="", intent="diagnosis", history=case.history, captions=captions, findings=entries
    )
    search_images = (
        [im for im, e in zip(images, entries, strict=True) if e["accepted"]] if entries else images
    )
    evidence, image_evidence, _ = retrieve(
        searcher,
        queries,
        search_images if has_images else [],
        image_k=image_k,
        n_hits=n_hits,
        mode=mode,
        exclude_doc_ids=[f"{source}:case/{case.case_id}"],
        exclude_case_ids=[case.case_id],
    )
    candidates = build_candidates(
        evidence,
        image_evidence,
        case_text="\n".join([case.history, *captions]),
        perception=perception_text(entries),
        max_candidates=max_candidates,
        imaged_region=imaged_region(entries),
        finding_terms=finding_terms(entries),
        tumour_types=tumour_types(entries),
    )
    matcher = DiagnosisMatcher()
    return {
        "case_id": case.case_id,
        "setting": setting,
        "gold": case.gold,
        "labels": [c.label for c in candidates],
        "regions": [c.region for c in candidates],
        "x": feature_matrix(candidates).round(6).tolist(),
        "correct": [bool(matcher.same(c.label, case.gold)) for c in candidates],
        "n_images": len(images),
        "n_accepted": sum(1 for e in entries if e["accepted"]),
    }


def collect_features(
    searcher: Any,
    cases: Sequence[FitCase],
    *,
    settings: Sequence[str] = ("text",),
    vlm: Any = None,
    cache: str | Path | None = None,
    progress: bool = False,
    **kw: Any,
) -> list[dict[str, Any]]:
    """Feature rows of every case and setting (the ``image`` setting only for cases with images); reused
    from / appended to the JSONL ``cache`` when given."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    cache_path = Path(cache) if cache else None
    if cache_path and cache_path.is_file():
        for line in cache_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("features") == list(FEATURES):
                    done[(row["case_id"], row.get("setting", "text"))] = row
    todo = [
        (c, s) for s in settings for c in cases if (c.case_id, s) not in done and (s != "image" or c.images)
    ]
    iterator: Iterable[tuple[FitCase, str]] = todo
    if progress:
        from tqdm import tqdm

        iterator = tqdm(todo, desc="fit features", unit="case")
    handle = cache_path.open("a", encoding="utf-8") if cache_path else None
    try:
        for case, setting in iterator:
            row = {
                **case_features(searcher, case, setting=setting, vlm=vlm, **kw),
                "features": list(FEATURES),
            }
            done[(case.case_id, setting)] = row
            if handle:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
    finally:
        if handle:
            handle.close()
    return [done[(c.case_id, s)] for s in settings for c in cases if (c.case_id, s) in done]


def _cases(rows: Sequence[dict[str, Any]]) -> list[Case]:
    return [
        Case(
            np.asarray(r["x"], dtype=np.float64).reshape(-1, len(FEATURES)),
            np.asarray(r["correct"], dtype=bool),
        )
        for r in rows
    ]


def _folds(n: int, k: int, seed: int = 0, groups: Sequence[str] | None = None) -> list[np.ndarray]:
    """``k`` folds of ``n`` rows; rows of one group (case) always share a fold."""
    groups = list(groups) if groups is not None else [str(i) for i in range(n)]
    uniq = list(dict.fromkeys(groups))
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: i % k for i, j in enumerate(order)}
    g = np.array([fold_of[x] for x in groups])
    return [np.flatnonzero(g == i) for i in range(k)]


def _oof_logits(cases: Sequence[Case], l2: float, folds: Sequence[np.ndarray]) -> list[np.ndarray]:
    logits: list[np.ndarray | None] = [None] * len(cases)
    for held in folds:
        held_set = set(held.tolist())
        train = [c for i, c in enumerate(cases) if i not in held_set]
        model = fit_weights(train, FEATURES, l2=l2)
        for i in held:
            logits[i] = model.logits(cases[i].x)
    return [z for z in logits if z is not None]


def _targets(cases: Sequence[Case]) -> list[np.ndarray]:
    return [np.concatenate([c.correct, [not c.correct.any()]]) for c in cases]


def _metrics(probs: Sequence[np.ndarray], cases: Sequence[Case], k: int = 5) -> dict[str, Any]:
    """Calibration and accuracy of held-out probabilities (candidates then null)."""
    nll, top1, topk, conf, hit = 0.0, 0, 0, [], []
    for p, case in zip(probs, cases, strict=True):
        cand = p[:-1]
        target = np.concatenate([case.correct, [not case.correct.any()]])
        nll -= math.log(max(float(p[target].sum()), 1e-300))
        order = np.argsort(-cand, kind="stable")
        ok1 = bool(len(order) and case.correct[order[0]])
        top1 += ok1
        topk += bool(case.correct[order[:k]].any()) if len(order) else False
        conf.append(float(cand[order[0]]) if len(order) else 0.0)
        hit.append(ok1)
    n = max(len(cases), 1)
    conf_a, hit_a = np.asarray(conf), np.asarray(hit, dtype=float)
    bins = np.clip((conf_a * 10).astype(int), 0, 9)
    ece = (
        sum(
            abs(conf_a[bins == b].mean() - hit_a[bins == b].mean()) * (bins == b).sum()
            for b in range(10)
            if (bins == b).any()
        )
        / n
    )
    return {
        "n_cases": len(cases),
        "nll": round(nll / n, 4),
        "top1": round(top1 / n, 4),
        f"top{k}": round(topk / n, 4),
        "ece_top1": round(float(ece), 4),
        "mean_top1_probability": round(float(conf_a.mean()) if len(conf_a) else 0.0, 4),
        "oracle_recall": round(sum(bool(c.correct.any()) for c in cases) / n, 4),
    }


def fit_from_rows(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Fits the model, temperature and risk table from feature rows (module docstring).

    Returns:
        ``{"model", "cv", "risk_control"}`` of the weights file.
    """
    cases = _cases(rows)
    if len(cases) < 2 * FOLDS:
        raise AgentConfigError(
            f"Only {len(cases)} training cases.", hint=f"Fit on at least {2 * FOLDS} cases."
        )
    folds = _folds(len(cases), FOLDS, seed, groups=[str(r["case_id"]) for r in rows])
    targets = _targets(cases)
    scores: dict[float, tuple[float, list[np.ndarray]]] = {}
    for l2 in L2_GRID:
        logits = _oof_logits(cases, l2, folds)
        t = fit_temperature(logits, targets)
        nll = float(
            np.mean(
                [
                    -math.log(max(float(_softmax(z / t)[m].sum()), 1e-300))
                    for z, m in zip(logits, targets, strict=True)
                ]
            )
        )
        scores[l2] = (nll, logits)
        log.info("l2=%s: out-of-fold NLL %.4f (T=%.3f)", l2, nll, t)
    best_l2 = min(scores, key=lambda v: scores[v][0])
    oof_logits = scores[best_l2][1]
    temperature = fit_temperature(oof_logits, targets)
    model = fit_weights(cases, FEATURES, l2=best_l2)
    model.temperature = temperature
    oof_probs = [_softmax(z / temperature) for z in oof_logits]
    top_probs = [float(p[:-1].max()) if len(p) > 1 else 0.0 for p in oof_probs]
    correct1 = [
        bool(len(c.correct) and c.correct[int(np.argmax(p[:-1]))])
        for p, c in zip(oof_probs, cases, strict=True)
    ]
    table = risk_table(top_probs, correct1, delta=DELTA)
    uncalibrated = [_softmax(z) for z in oof_logits]
    return {
        "model": model.to_dict(),
        "cv": {
            "folds": FOLDS,
            "seed": seed,
            "l2_grid": list(L2_GRID),
            "l2": best_l2,
            "oof_nll_by_l2": {str(k): round(v[0], 4) for k, v in scores.items()},
            "temperature": round(temperature, 4),
            "oof": _metrics(oof_probs, cases),
            "oof_before_temperature": _metrics(uncalibrated, cases),
            # per input setting: whether the image rows beat the history rows of the same cases is read here
            "oof_by_setting": {
                setting: _metrics(
                    [p for p, r in zip(oof_probs, rows, strict=True) if r.get("setting") == setting],
                    [c for c, r in zip(cases, rows, strict=True) if r.get("setting") == setting],
                )
                for setting in dict.fromkeys(str(r.get("setting")) for r in rows)
            },
        },
        "risk_control": {
            "delta": DELTA,
            "default_risk": DEFAULT_RISK,
            "thresholds": {str(a): threshold_for(table, a, DELTA) for a in RISKS},
            "table": table,
        },
    }


#: The feature fitted on the tumour-set rows alone (:func:`fit_image_diagnosis`).
IMAGE_DIAGNOSIS = "image_diagnosis"


def _zero_column(rows: Sequence[dict[str, Any]], j: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        x = np.asarray(r["x"], dtype=np.float64).reshape(-1, len(FEATURES)).copy()
        x[:, j] = 0.0
        out.append({**r, "x": x.tolist()})
    return out


def fit_image_diagnosis(
    fitted: dict[str, Any], rows: Sequence[dict[str, Any]], *, seed: int = 0
) -> dict[str, Any]:
    """Gives ``image_diagnosis`` its weight from the tumour-set rows, every other weight, the temperature and the
    risk table kept as fitted on the MedPix rows (where the feature is 0), so the tumour rows cannot move them.

    The weight ``a`` (on the raw probability: mean 0, std 1 for this feature) maximises the conditional
    likelihood of the rows' gold candidates (or of "none" when no candidate is right), bounded to [0, 20];
    reported out of fold (5 folds grouped by image) next to ``a = 0``. Updates ``fitted`` in place.
    """
    from scipy.optimize import minimize_scalar

    j = FEATURES.index(IMAGE_DIAGNOSIS)
    model = ConditionalLogit.from_dict(fitted["model"], expected=FEATURES)
    cases = _cases(rows)
    targets = _targets(cases)
    base = [model.logits(c.x) for c in cases]
    extra = [np.concatenate([c.x[:, j], [0.0]]) for c in cases]
    t = model.temperature

    def nll(a: float, idx: Sequence[int]) -> float:
        return float(
            np.mean(
                [
                    -math.log(max(float(_softmax((base[i] + a * extra[i]) / t)[targets[i]].sum()), 1e-300))
                    for i in idx
                ]
            )
        )

    def best(idx: Sequence[int]) -> float:
        return float(minimize_scalar(lambda a: nll(a, idx), bounds=(0.0, 20.0), method="bounded").x)

    everything = list(range(len(cases)))
    oof = [np.zeros(0)] * len(cases)
    for held in _folds(len(cases), FOLDS, seed, groups=[str(r["case_id"]) for r in rows]):
        held_set = set(held.tolist())
        a = best([i for i in everything if i not in held_set])
        for i in held:
            oof[i] = _softmax((base[i] + a * extra[i]) / t)
    a = best(everything)
    fitted["model"]["mean"][j], fitted["model"]["std"][j], fitted["model"]["weights"][j] = 0.0, 1.0, a
    fitted["cv"][IMAGE_DIAGNOSIS] = {
        "weight": round(a, 4),
        "n_rows": len(cases),
        "oof": _metrics(oof, cases),
        "without": _metrics([_softmax(b / t) for b in base], cases),
        "note": "weight fitted on the tumour-set rows only, the rest of the model held fixed",
    }
    log.info("image_diagnosis: weight %.3f on %d tumour rows", a, len(cases))
    return fitted


def fit(
    bundle: str | Path,
    medpix: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    cache: str | Path | None = None,
    limit: int | None = None,
    progress: bool = False,
    command: str | None = None,
    verify: bool = True,
    settings: Sequence[str] = FIT_SETTINGS,
    vlm_spec: str = "builtin",
    tumour: str | Path | None = None,
    tumour_per_class: int = 60,
) -> dict[str, Any]:
    """Collects features (leave-one-out) in each input setting, fits, and writes the weights JSON; returns
    its content. The ``image`` setting runs the VLM ``vlm_spec`` on the cases' shipped images; ``tumour`` (a
    brain-tumour YOLO folder) adds image-only rows of its train split (:func:`load_tumour_cases`)."""
    from agent.resources import open_searcher

    cases = load_medpix_cases(medpix, split)
    if limit:
        cases = cases[:limit]
    searcher = open_searcher(bundle, verify=verify)
    vlm = None
    if "image" in settings:
        from vlm.registry import create_vlm

        vlm = create_vlm(vlm_spec)
    rows = collect_features(searcher, cases, settings=settings, vlm=vlm, cache=cache, progress=progress)
    # the MedPix rows fit every weight but image_diagnosis (0 there: the tumour type speaks on almost no MedPix
    # image, and a handful of values would only add noise); the tumour rows then fit that one weight
    fitted = fit_from_rows(_zero_column(rows, FEATURES.index(IMAGE_DIAGNOSIS)))
    tumour_cases = load_tumour_cases(tumour, tumour_per_class) if tumour else []
    if tumour_cases:
        if vlm is None:
            from vlm.registry import create_vlm

            vlm = create_vlm(vlm_spec)
        extra = collect_features(
            searcher, tumour_cases, settings=("image",), vlm=vlm, cache=cache, progress=progress
        )
        fit_image_diagnosis(fitted, extra)
    manifest = getattr(searcher.bundle, "manifest", {}) or {}
    payload = {
        "format": 1,
        "fitted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command
        or f"zebra agent fit --bundle {bundle} --medpix {medpix} --split {split} --out {out}",
        "data": {
            "medpix": str(medpix),
            "split": split,
            "n_cases": len({r["case_id"] for r in rows}),
            "leave_one_out": "the case's own documents (doc_id medpix:case/<U_id>, chunks with its case_id) are removed from its hits",
            "inputs": "setting text: clinical history (History + Exam), the captions of the case's described "
            "images, and its shipped PNG images searched when the bundle has an image index; setting image: "
            "the history and the shipped PNG images through the VLM (findings, imaged region) and the image "
            "search, no caption; folds grouped by case",
            "n_cases_with_images": len({r["case_id"] for r in rows if r.get("n_images")}),
            "settings": {s: sum(1 for r in rows if r.get("setting", "text") == s) for s in settings},
            **(
                {
                    "tumour": f"{tumour} (train split): {len(tumour_cases)} images, {tumour_per_class} per class, "
                    "image only, gold = the class; they fit the image_diagnosis weight alone"
                }
                if tumour_cases
                else {}
            ),
            "n_rows": len(rows),
        },
        "bundle": {
            "path": str(bundle),
            "sources": manifest.get("sources"),
            "counts": {
                k: v
                for k, v in (manifest.get("counts") or {}).items()
                if k in ("documents", "chunks", "images")
            },
            "text_embedder": (manifest.get("text_embedder") or {}).get("name"),
        },
        "features": list(FEATURES),
        **fitted,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return payload


def describe(model: ConditionalLogit) -> dict[str, float]:
    """Feature -> weight (per standard deviation), for reports."""
    return {name: round(float(w), 4) for name, w in zip(model.features, model.weights, strict=True)}
