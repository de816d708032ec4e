"""CLI commands of the anomaly-aware VLM: ``zebra analyze``, ``zebra vlm train|eval|build-default|refit-gate|fit-findings|info`` and
``zebra bench vlm``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import typer

from zebra.errors import ConfigError
from zebra_cli.app import app, bench_app

log = logging.getLogger(__name__)

vlm_app = typer.Typer(
    help="The anomaly-aware vision-language model: train, evaluate, inspect.", no_args_is_help=True
)
app.add_typer(vlm_app, name="vlm")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(_json_safe(data), indent=2))


def _vlm_spec(spec: str | None) -> str:
    from zebra.config import get_settings

    return spec or get_settings().models.vlm


def _pick_image(path: Path) -> tuple[Any, dict[str, Any]]:
    """The middle image of the first series of whatever ``path`` holds (via safe intake)."""
    from zebra_intake import load_study

    study = load_study(path)
    series = next((s for s in study.series if s.images), None)
    if series is None:
        raise ConfigError(
            f"{path} holds no image.", hint="Pass a DICOM/NIfTI/PNG/JPEG image or a folder of them."
        )
    image = series.images[len(series.images) // 2]
    info = {
        "source_kind": study.source_kind,
        "modality": study.modality,
        "source_name": image.source_name,
        "slice_index": image.slice_index,
        "images_in_series": len(series.images),
        "shape": list(image.shape),
        "pixel_spacing": list(image.pixel_spacing) if image.pixel_spacing else None,
    }
    return image, info


@app.command("analyze")
def analyze_cmd(
    image: Path = typer.Argument(..., help="Medical image (DICOM file/folder/zip, NIfTI, PNG, JPEG)."),
    prior: Path | None = typer.Option(
        None, "--prior", help="An earlier image of the same patient, for change."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for analysis.json, overlay.png (and diff_overlay.png)."
    ),
    vlm: str | None = typer.Option(
        None, "--vlm", help="VLM spec: builtin, builtin:/path.safetensors, hf:/path."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the analysis JSON."),
) -> None:
    """Analyse an image (the middle slice of its first series): gate, anomaly score, boxes, heatmap, caption."""
    from vlm.registry import create_vlm
    from zebra.config import get_settings

    current, current_info = _pick_image(image)
    prior_image, prior_info = _pick_image(prior) if prior is not None else (None, None)
    backend = create_vlm(_vlm_spec(vlm), device=get_settings().models.device)
    result = backend.analyze(current, prior=prior_image)
    out.mkdir(parents=True, exist_ok=True)
    files = {"analysis": str(out / "analysis.json")}
    display = current.rgb if current.rgb is not None else current.display
    if result.current.gate.accepted:
        files["overlay"] = str(result.current.overlay_png(display, out / "overlay.png"))
    if result.change is not None and result.change.diff_heatmap is not None:
        from vlm.overlay import render_overlay

        files["diff_overlay"] = str(
            render_overlay(display, result.change.diff_heatmap, [], out / "diff_overlay.png")
        )
    payload = {
        "input": current_info,
        "prior_input": prior_info,
        **result.to_dict(),
        "files": files,
        "disclaimer": "Research use only; not a diagnosis.",
    }
    (out / "analysis.json").write_text(json.dumps(_json_safe(payload), indent=2))
    if as_json:
        _echo_json(payload)
        return
    gate = result.current.gate
    if not gate.accepted:
        typer.echo(f"not analysed ({gate.kind}): {gate.reason}")
    else:
        typer.echo(result.current.caption or "")
        if result.change is not None:
            typer.echo(result.change.statement)
    typer.echo(f"wrote {', '.join(files.values())}")


@vlm_app.command("train")
def train_cmd(
    stage: str = typer.Option(..., "--stage", help="clip, ano, diff or explain (in this order)."),
    data: list[Path] = typer.Option(..., "--data", help="NOVA-layout training set (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder of this stage."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop (resumably) after this long."),
    init: Path | None = typer.Option(
        None, "--init", help="Start from an earlier stage's folder or checkpoint."
    ),
    val: list[Path] = typer.Option([], "--val", help="Validation NOVA set (repeatable; never trained on)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default: per stage)."),
    lock_image: bool = typer.Option(
        False, "--lock-image", help="clip: keep the detection trunk fixed (LiT)."
    ),
    train_size: list[int] = typer.Option(
        [], "--train-size", help="ano: input sides for multi-scale (repeatable)."
    ),
    feature_variants: int = typer.Option(
        0,
        "--feature-variants",
        min=0,
        help="diff: cache N jittered passes per pair through the frozen network.",
    ),
    threads: int = typer.Option(2, "--threads", min=1),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train (or resume) one stage; prints the final state as JSON. Per-epoch metrics go to OUT/metrics.jsonl."""
    from vlm.train.loop import TrainOptions, train_stage

    state = train_stage(
        TrainOptions(
            stage=stage,
            data=list(data),
            out=out,
            epochs=epochs,
            seed=seed,
            resume=resume,
            batch_size=batch_size,
            max_minutes=max_minutes,
            init=init,
            val=list(val),
            lr=lr,
            lock_image=lock_image,
            train_sizes=list(train_size),
            feature_variants=feature_variants,
            threads=threads,
            progress=not quiet,
        )
    )
    _echo_json({k: v for k, v in state.items() if k not in ("sums", "options")})


@vlm_app.command("eval")
def eval_cmd(
    data: list[Path] = typer.Option(
        [], "--data", help="NOVA set with gold boxes (e.g. the tumour valid split)."
    ),
    vlm: str | None = typer.Option(None, "--vlm", help="builtin or builtin:/path.safetensors."),
    pairs: list[Path] = typer.Option([], "--pairs", help="NOVA set(s) of held-out longitudinal pairs."),
    retrieval: Path | None = typer.Option(
        None, "--retrieval", help="Captioned NOVA set (MedPix dev) for recall@10."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Evaluate at most N images per --data set."
    ),
    findings: Path | None = typer.Option(
        None, "--findings", help="MedPix 2.0 folder: finding heads and caption term F1 on real captions."
    ),
    findings_split: str = typer.Option("dev", "--findings-split", help="MedPix split for --findings."),
    tumour_type: Path | None = typer.Option(
        None, "--tumour-type", help="Brain-tumour YOLO folder: the tumour-type head on its --tumour-split."
    ),
    tumour_split: str = typer.Option("valid", "--tumour-split", help="Split for --tumour-type."),
    protocol: str = typer.Option(
        "nova",
        "--protocol",
        help="Box scoring on --data: nova (the NOVA reference: per-image 11-point AP over every image, an image "
        "without gold boxes scores 1 only when nothing is drawn) or coco (101-point, images with gold boxes).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
) -> None:
    """mAP@0.3/0.5/[.5:.95] and ACC50 (--protocol), pointing game and anomaly AUROC on --data; change accuracy
    on --pairs; retrieval recall; finding-head accuracy and caption term F1 against the real MedPix captions
    (--findings); the tumour-type head on a labelled brain-tumour split (--tumour-type)."""
    from eval.metrics.localisation import PROTOCOLS
    from vlm.eval.run import evaluate_detection, evaluate_pairs, evaluate_retrieval
    from vlm.registry import create_vlm
    from zebra.config import get_settings

    if not data and not pairs and retrieval is None and findings is None and tumour_type is None:
        raise ConfigError(
            "Nothing to evaluate.", hint="Pass --data, --pairs, --retrieval, --findings and/or --tumour-type."
        )
    if protocol.strip().lower() not in PROTOCOLS:  # before the model loads
        raise ConfigError(f"Unknown protocol: {protocol}.", hint=f"Use any of: {', '.join(PROTOCOLS)}.")
    backend = create_vlm(_vlm_spec(vlm), device=get_settings().models.device)
    report: dict[str, Any] = {"model": backend.name}
    progress = not as_json
    if data:
        report["detection"] = [
            evaluate_detection(backend, d, limit=limit, progress=progress, protocol=protocol) for d in data
        ]
    if pairs:
        report["change"] = evaluate_pairs(backend, list(pairs), progress=progress)
    if retrieval is not None:
        checkpoint = getattr(backend, "checkpoint", None)
        if checkpoint is None:
            raise ConfigError("Retrieval evaluation needs the builtin backend.", hint="Use --vlm builtin.")
        report["retrieval"] = evaluate_retrieval(
            checkpoint, retrieval, cache_dir=get_settings().data_dir / "cache" / "vlm"
        )
    if findings is not None:
        report["findings"] = findings_report(backend, findings, findings_split, progress=progress)
    if tumour_type is not None:
        from vlm.eval.tumour_eval import evaluate_tumour_type

        report["tumour_type"] = evaluate_tumour_type(backend, tumour_type, split=tumour_split, limit=limit)
    _echo_json(report)


def findings_report(backend: Any, medpix: Path, split: str, *, progress: bool = False) -> dict[str, Any]:
    """Finding heads and captions on real MedPix images, with the caption's clinical-term F1 (the evaluation
    package's vocabulary, micro-averaged) against the real captions."""
    from eval.metrics.terms import default_vocabulary, extract_terms, f1_from_counts, term_counts
    from vlm.eval.findings_eval import caption_pairs, evaluate_findings

    report = evaluate_findings(backend, medpix, split=split, progress=progress)
    predictions, references = caption_pairs(report)
    vocab = default_vocabulary()
    tp = fp = fn = 0
    for pred, ref in zip(predictions, references, strict=True):
        a, b, c = term_counts(extract_terms(pred, vocab), extract_terms(ref, vocab))
        tp, fp, fn = tp + a, fp + b, fn + c
    report["caption_term_f1"] = {
        "f1": round(f1_from_counts(tp, fp, fn) or 0.0, 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "n_captions": len(predictions),
        "vocabulary": "eval.metrics.terms (radiology terms + HPO), micro-averaged",
    }
    report["examples"] = report.pop("pairs")[:5]
    return report


@vlm_app.command("build-default")
def build_default_cmd(
    medpix: Path = typer.Option(..., "--medpix", help="MedPix 2.0 folder (e.g. ../shared/data/medpix-2.0)."),
    tumor: Path = typer.Option(
        ..., "--tumor", help="Brain-tumour YOLO folder (../shared/data/brain-tumor-mri)."
    ),
    work: Path = typer.Option(
        Path("/tmp/zebra-vlm-build"), "--work", help="Scratch folder (data, checkpoints)."
    ),
    out: Path = typer.Option(Path("vlm/weights"), "--out", help="Where the shipped files are written."),
    seed: int = typer.Option(0, "--seed"),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Cap per stage; a capped build continues when run again."
    ),
    continue_capped: bool = typer.Option(
        False, "--continue-capped", help="Go on with the next stage when one hits --max-minutes."
    ),
    threads: int = typer.Option(2, "--threads", min=1),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Reproduce the default checkpoint end to end: convert data, synthesise lesions, train all stages, evaluate."""
    from vlm.train.build import BuildPlan, build_default

    plan = BuildPlan(
        medpix=medpix,
        tumor=tumor,
        work=work,
        out=out,
        seed=seed,
        threads=threads,
        progress=not quiet,
        continue_capped=continue_capped,
    )
    if max_minutes is not None:
        plan.max_minutes = dict.fromkeys(plan.epochs, max_minutes)
    _echo_json(build_default(plan))


@vlm_app.command("refit-gate")
def refit_gate_cmd(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="The .safetensors checkpoint (JSON beside it)."
    ),
    work: Path = typer.Option(
        ..., "--work", help="build-default work folder (nova-tumor-train, nova-medpix)."
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Refit only the learnt photo gate (gate_photo) of a checkpoint from training images, in place."""
    from vlm.train.finalize import refit_gate

    block = refit_gate(checkpoint, work, seed=seed)
    _echo_json({"threshold": block["threshold"], "info": block["info"]})


@vlm_app.command("fit-findings")
def fit_findings_cmd(
    medpix: Path = typer.Option(..., "--medpix", help="MedPix 2.0 folder (Descriptions.json, images/)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="The .safetensors checkpoint (default: the shipped one); updated in place."
    ),
    split: str = typer.Option("train", "--split", help="Training split (dev/test are refused)."),
) -> None:
    """Fit the finding heads (modality, sequence, plane, appearance and site terms) on MedPix train images.

    The tumour-type heads read the same projection and are dropped: run fit-tumour-type afterwards."""
    from vlm.backends.builtin import BuiltinVLM
    from vlm.checkpoint import default_checkpoint
    from vlm.train.findings import fit_findings, write_findings

    ckpt = checkpoint or default_checkpoint()
    model = fit_findings(BuiltinVLM(ckpt), medpix, split=split)
    block = write_findings(ckpt, model)
    _echo_json({k: {kk: vv for kk, vv in v.items() if kk != "positives"} for k, v in block["cv"].items()})


@vlm_app.command("fit-tumour-type")
def fit_tumour_type_cmd(
    tumor: Path = typer.Option(
        ..., "--tumor", help="Brain-tumour YOLO folder (data.yaml, train/images, train/labels)."
    ),
    medpix: Path = typer.Option(
        ..., "--medpix", help="MedPix 2.0 folder (the domain head's negatives, train split)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="The .safetensors checkpoint (default: the shipped one); updated in place."
    ),
) -> None:
    """Fit the tumour-type head and its domain head on the tumour set's train split (after fit-findings)."""
    from vlm.backends.builtin import BuiltinVLM
    from vlm.checkpoint import default_checkpoint
    from vlm.train.findings import write_findings
    from vlm.train.tumour_type import fit_tumour_type

    ckpt = checkpoint or default_checkpoint()
    model, reports = fit_tumour_type(BuiltinVLM(ckpt), tumor, medpix)
    write_findings(ckpt, model)
    _echo_json(reports)


@vlm_app.command("info")
def info_cmd(vlm: str | None = typer.Option(None, "--vlm", help="VLM spec.")) -> None:
    """Show the registered VLM backends and the checkpoint in force (its metrics) as JSON."""
    from vlm.registry import VLMS, load_backends

    load_backends()
    info: dict[str, Any] = {"backends": VLMS.describe()}
    spec = _vlm_spec(vlm)
    if spec.split(":", 1)[0] == "builtin":
        from vlm.checkpoint import default_checkpoint, read_meta

        path = Path(spec.split(":", 1)[1]).expanduser() if ":" in spec else default_checkpoint()
        meta = read_meta(path)
        info["checkpoint"] = {
            "path": str(path),
            "config": meta.get("config"),
            "encoder": meta.get("encoder"),
            "metrics": meta.get("metrics"),
        }
    _echo_json(info)


@bench_app.command("vlm")
def bench_vlm_cmd(
    n: int = typer.Option(50, "--n", min=1, help="Timed single-image analyses."),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM spec."),
    size: int = typer.Option(512, "--size", min=64, help="Side of the synthetic test slice."),
    threads: int = typer.Option(2, "--threads", min=1),
) -> None:
    """p50/p95 latency of single-image analysis (and of a prior/current pair) on a synthetic slice, JSON."""
    from vlm.bench import bench_vlm

    _echo_json(bench_vlm(_vlm_spec(vlm), n=n, size=size, threads=threads))
