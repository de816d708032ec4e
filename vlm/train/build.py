"""``zebra vlm build-default``: from the raw data sets to the shipped checkpoint, end to end.

Steps (each skipped when already done in ``work``, so an interrupted build continues):

1. convert MedPix (train, dev) and the tumour set (train, valid) to NOVA layout (images linked);
2. make a background folder (MedPix train images + tumour ``No_Tumor`` train images) and synthetic sets:
   lesions on backgrounds and on synthetic brains (``ano``), longitudinal pairs (``diff``, seeds 3/4) and
   held-out pairs (seeds 98/99, evaluation only);
3. train the stages ``clip`` -> ``ano`` (first multi-scale at 128-192 px, which CPU training can afford,
   then at 256 px) -> ``diff`` -> ``explain`` -> ``lit`` (``clip`` with the detection trunk locked,
   re-aligning layer4, the attention pool and the text tower to the final encoder);
4. finalise: gate statistics, evaluation on the tumour ``valid`` split (never trained on), held-out pairs
   and MedPix dev retrieval, then write the checkpoint, its JSON, the open_clip encoder and the model card.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm.train.loop import STATE_FILE, TrainOptions, train_stage

log = logging.getLogger(__name__)


@dataclass
class BuildPlan:
    """Sources, folders and per-stage epochs of a default build.

    Attributes:
        medpix: MedPix 2.0 source folder (``Case_topic.json`` ...).
        tumor: Brain-tumour YOLO source folder (``data.yaml``).
        work: Scratch folder for converted data, caches and stage checkpoints.
        out: Where the final files go (``vlm/weights``).
        epochs: Epochs per stage.
        batch_size: Batch size per stage.
        seed: Training seed.
        max_minutes: Optional wall-time cap per stage (a capped stage is resumed by the next build).
        threads: torch CPU threads.
        progress: Show progress bars.
        continue_capped: Accept a stage that hit its time cap and go on with the next one (a capped stage
            is then not resumed by later builds); by default the build stops there and resumes it next time.
    """

    medpix: Path
    tumor: Path
    work: Path
    out: Path
    epochs: dict[str, int] = field(
        default_factory=lambda: {
            "clip": 2,
            "ano-multiscale": 6,
            "ano": 2,
            "diff": 30,
            "explain": 2,
            "lit": 15,
        }
    )
    batch_size: dict[str, int] = field(
        default_factory=lambda: {
            "clip": 32,
            "ano-multiscale": 16,
            "ano": 16,
            "diff": 16,
            "explain": 32,
            "lit": 64,
        }
    )
    seed: int = 0
    max_minutes: dict[str, float] = field(default_factory=dict)
    threads: int = 2
    progress: bool = True
    continue_capped: bool = False

    def path(self, name: str) -> Path:
        """A folder inside ``work``."""
        return self.work / name


SYNTHETIC_SETS: dict[str, tuple[bool, int, int, bool]] = {
    # name: (on real backgrounds, cases, seed, pairs)
    "syn-ano-bg": (True, 1000, 1, False),
    "syn-ano-brain": (False, 250, 2, False),
    "syn-diff-bg": (True, 800, 3, True),
    "syn-diff-brain": (False, 400, 4, True),
    "syn-pairs-val-bg": (True, 200, 98, True),
    "syn-pairs-val-brain": (False, 200, 99, True),
}


def prepare_data(plan: BuildPlan) -> None:
    """Steps 1-2: NOVA conversions, backgrounds and synthetic sets (skips what exists)."""
    from zebra_datasets.convert import CONVERTERS
    from zebra_datasets.convert.synthetic import generate_synthetic, list_backgrounds

    plan.work.mkdir(parents=True, exist_ok=True)
    conversions = [
        ("medpix", plan.medpix, "nova-medpix", "train"),
        ("medpix", plan.medpix, "nova-medpix-dev", "dev"),
        ("yolo", plan.tumor, "nova-tumor-train", "train"),
        ("yolo", plan.tumor, "nova-tumor-valid", "valid"),
    ]
    for kind, src, name, split in conversions:
        if not (plan.path(name) / "data" / "nova-v1.parquet").is_file():
            log.info("converting %s %s -> %s", kind, split, plan.path(name))
            CONVERTERS.get_or_raise(kind).func(
                src, plan.path(name), split=split, images="link", progress=plan.progress
            )
    backgrounds = plan.path("bg")
    if not backgrounds.is_dir() or not any(backgrounds.iterdir()):
        make_backgrounds(plan.path("nova-medpix"), plan.path("nova-tumor-train"), backgrounds)
    bg_files = list_backgrounds(backgrounds)
    for name, (on_bg, cases, seed, pairs) in SYNTHETIC_SETS.items():
        if not (plan.path(name) / "data" / "nova-v1.parquet").is_file():
            log.info("generating %s", name)
            generate_synthetic(
                plan.path(name),
                n_cases=cases,
                seed=seed,
                backgrounds=bg_files if on_bg else None,
                pairs=pairs,
                progress=plan.progress,
            )


def make_backgrounds(medpix_train: Path, tumor_train: Path, folder: Path) -> int:
    """Links MedPix train images and tumour ``No_Tumor`` train images into ``folder``; returns the count."""
    from zebra_datasets import read_nova

    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for root, prefix, only in ((medpix_train, "mp_", None), (tumor_train, "nt_", "No_Tumor")):
        dataset = read_nova(root)
        for record in dataset.records:
            if only and record.final_diagnosis != only:
                continue
            link = folder / f"{prefix}{record.filename}"
            if not link.exists():
                os.symlink(os.path.realpath(dataset.resolve_image(record)), link)
            n += 1
    return n


def stage_runs(plan: BuildPlan) -> list[TrainOptions]:
    """The stage runs of the default build, in order."""
    p = plan.path
    common: dict[str, Any] = {
        "seed": plan.seed,
        "cache_dir": p("cache"),
        "threads": plan.threads,
        "progress": plan.progress,
    }
    tumour_and_synthetic = [p("nova-tumor-train"), p("syn-ano-bg"), p("syn-ano-brain")]
    pairs_val = [p("syn-pairs-val-bg"), p("syn-pairs-val-brain")]
    runs: list[tuple[str, str, list[Path], list[Path], Path | None, dict[str, Any]]] = [
        ("clip", "clip", [p("nova-medpix")], [p("nova-medpix-dev")], None, {}),
        (
            "ano-multiscale",
            "ano",
            tumour_and_synthetic,
            [p("nova-tumor-valid")],
            p("stage-clip"),
            {"train_sizes": [128, 160, 192]},
        ),
        (
            "ano",
            "ano",
            tumour_and_synthetic,
            [p("nova-tumor-valid")],
            p("stage-ano-multiscale"),
            {"lr": 3e-4},
        ),
        (
            "diff",
            "diff",
            [p("syn-diff-bg"), p("syn-diff-brain")],
            pairs_val,
            p("stage-ano"),
            {"feature_variants": 3},
        ),
        ("explain", "explain", tumour_and_synthetic, [], p("stage-diff"), {}),
        ("lit", "clip", [p("nova-medpix")], [p("nova-medpix-dev")], p("stage-explain"), {"lock_image": True}),
    ]
    out = []
    for name, stage, data, val, init, extra in runs:
        out.append(
            TrainOptions(
                stage=stage,
                data=data,
                val=val,
                out=p(f"stage-{name}"),
                init=init,
                epochs=plan.epochs[name],
                batch_size=plan.batch_size[name],
                max_minutes=plan.max_minutes.get(name),
                **common,
                **extra,
            )
        )
    return out


def _stage_state(folder: Path) -> dict[str, Any] | None:
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_stages(plan: BuildPlan) -> bool:
    """Step 3: trains (or resumes) every stage; returns ``False`` when one stopped early (time cap)."""
    for opts in stage_runs(plan):
        state = _stage_state(opts.out)
        if state and state.get("done") and state.get("epoch", 0) >= opts.epochs:
            log.info("stage %s already done", opts.out.name)
            continue
        if state and plan.continue_capped and state.get("stopped") == "max_minutes":
            log.info("stage %s was capped; continuing with its last checkpoint", opts.out.name)
            continue
        opts.resume = state is not None
        state = train_stage(opts)
        if not state.get("done"):
            if plan.continue_capped:
                log.warning("stage %s hit its time cap; going on with its last checkpoint", opts.out.name)
                continue
            log.warning(
                "stage %s stopped before its last epoch; run the build again to continue", opts.out.name
            )
            return False
    return True


def build_default(plan: BuildPlan) -> dict[str, Any]:
    """Runs every step; returns the finalisation report (or the stage that stopped early)."""
    prepare_data(plan)
    if not run_stages(plan):
        return {
            "complete": False,
            "hint": "A stage hit its time cap; run the same command again to continue.",
        }
    from vlm.train.finalize import finalize

    return finalize(plan)
