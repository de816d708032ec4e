"""One resumable training stage: seeded batches, cosine schedule, checkpoints, JSONL metrics.

Every step's randomness (batch order, augmentation) is a pure function of ``(seed, epoch, step)``, and the
optimizer state is saved with the weights, so a stopped-and-resumed run takes the same steps as an
uninterrupted one.

The output folder holds ``model.safetensors`` + ``model.json`` (a usable VLM checkpoint),
``text.safetensors`` (the CLIP text tower), ``optimizer.pt`` (torch tensors only, read with
``weights_only=True``), ``state.json`` (where training stands) and ``metrics.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vlm.model.config import VLMConfig
from vlm.train.bundle import Bundle
from vlm.train.data import ImageSet, load_image_sets
from vlm.train.errors import TrainingConfigError
from vlm.train.stages import STAGES, Stage

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
OPTIM_FILE = "optimizer.pt"
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainOptions:
    """Options of :func:`train_stage` (the ``zebra vlm train`` flags).

    Attributes:
        stage: ``clip``, ``ano``, ``diff`` or ``explain``.
        data: NOVA-layout training sets.
        out: Output (checkpoint) folder.
        epochs: Epochs to train in total (a resumed run continues up to this number).
        batch_size: Images (or pairs) per step.
        lr: Peak learning rate; ``None`` uses the stage's default.
        weight_decay: AdamW weight decay.
        seed: Seed of initialisation, order and augmentation.
        resume: Continue from ``out``'s last checkpoint.
        init: Start from this stage folder or checkpoint (an earlier stage's output).
        max_minutes: Stop (resumably) after this much wall time.
        max_steps: Stop (resumably) after this many steps in total (tests).
        val: Validation sets (never trained on).
        val_limit: Most validation images per epoch.
        cache_dir: Where preprocessed data caches live (default ``<data_dir>/cache/vlm``).
        config: Network config for a fresh start (default: the shipped architecture).
        threads: torch CPU threads.
        save_every: Checkpoint every N steps (and at every epoch end).
        lock_image: ``clip`` stage: keep the detection trunk fixed, align layer4/attention pool/text (LiT).
        train_sizes: ``ano`` stage: input sides to pick from per step (multi-scale; empty = model size).
        feature_variants: ``diff`` stage: precompute this many jittered versions of every pair through the
            frozen network, then train on them (0 = run the frozen network every step).
        warmup_steps: Linear warm-up steps.
        progress: Show progress bars.
    """

    stage: str
    data: list[Path]
    out: Path
    epochs: int = 10
    batch_size: int = 16
    lr: float | None = None
    weight_decay: float = 1e-4
    seed: int = 0
    resume: bool = False
    init: Path | None = None
    max_minutes: float | None = None
    max_steps: int | None = None
    val: list[Path] = field(default_factory=list)
    val_limit: int = 300
    cache_dir: Path | None = None
    config: VLMConfig | None = None
    threads: int = 2
    save_every: int = 50
    lock_image: bool = False
    train_sizes: list[int] = field(default_factory=list)
    feature_variants: int = 0
    warmup_steps: int = 100
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (paths as strings)."""
        out = asdict(self)
        out["data"] = [str(p) for p in self.data]
        out["val"] = [str(p) for p in self.val]
        out["out"] = str(self.out)
        out["init"] = str(self.init) if self.init else None
        out["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        out["config"] = self.config.to_dict() if self.config else None
        return out


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of one step's randomness."""
    return int(np.random.default_rng([seed, epoch, step, 11]).integers(0, 2**62))


def _default_cache_dir() -> Path:
    from zebra.config import get_settings

    return get_settings().data_dir / "cache" / "vlm"


def _load_data(opts: TrainOptions, size: int) -> tuple[ImageSet, ImageSet | None]:
    cache = opts.cache_dir or _default_cache_dir()
    masks = opts.stage == "diff"
    data = load_image_sets(opts.data, size=size, cache_dir=cache, masks=masks, progress=opts.progress)
    val = None
    if opts.val:
        from vlm.train.data import load_heldout_sets

        val = load_heldout_sets(opts.val, size=size, cache_dir=cache, masks=masks, progress=opts.progress)
    return data, val


def _save(out: Path, bundle: Bundle, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    bundle.save(
        out, {"stage": state["stage"], "training": {k: state[k] for k in ("epoch", "global_step", "seed")}}
    )
    tmp = out / f".{OPTIM_FILE}.{os.getpid()}.tmp"
    torch.save(opt.state_dict(), tmp)
    os.replace(tmp, out / OPTIM_FILE)
    tmp_state = out / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp_state.write_text(json.dumps(state, indent=2))
    os.replace(tmp_state, out / STATE_FILE)


def _start(opts: TrainOptions) -> tuple[Bundle, dict[str, Any] | None]:
    out = opts.out
    if opts.resume:
        if not (out / STATE_FILE).is_file():
            raise TrainingConfigError(
                f"Nothing to resume in {out} (no {STATE_FILE}).", hint="Drop --resume to start this stage."
            )
        state = json.loads((out / STATE_FILE).read_text())
        if state.get("stage") != opts.stage:
            raise TrainingConfigError(
                f"{out} holds stage {state.get('stage')!r}, not {opts.stage!r}.", hint="Use the same --stage."
            )
        return Bundle.load(out, seed=opts.seed), state
    if (out / STATE_FILE).is_file():
        raise TrainingConfigError(
            f"{out} already holds a training run.", hint="Pass --resume to continue it, or another --out."
        )
    if opts.init is not None:
        return Bundle.load(opts.init, seed=opts.seed), None
    return Bundle.fresh(opts.config or VLMConfig(), opts.seed), None


def train_stage(opts: TrainOptions) -> dict[str, Any]:
    """Trains one stage (or resumes it) and returns the final state (with the last epoch's metrics).

    Raises:
        TrainingConfigError: Unknown stage, nothing to resume, or an occupied output folder.
        TrainingDataError: The data have nothing for this stage.
    """
    if opts.stage not in STAGES:
        raise TrainingConfigError(
            f"Unknown stage {opts.stage!r}.", hint=f"Use one of: {', '.join(STAGES)} (in this order)."
        )
    torch.set_num_threads(max(1, opts.threads))
    opts.out.mkdir(parents=True, exist_ok=True)
    bundle, state = _start(opts)
    data, val = _load_data(opts, bundle.vlm.config.image_size)
    stage: Stage = STAGES[opts.stage](
        data,
        opts.batch_size,
        val,
        lock_image=opts.lock_image,
        val_limit=opts.val_limit,
        train_sizes=opts.train_sizes,
        feature_variants=opts.feature_variants,
        seed=opts.seed,
    )
    params = stage.trainable(bundle)
    peak = opts.lr or stage.default_lr
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=opts.weight_decay)
    if state is not None:
        opt.load_state_dict(torch.load(opts.out / OPTIM_FILE, map_location="cpu", weights_only=True))
    else:
        state = {
            "stage": opts.stage,
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "seed": opts.seed,
            "done": False,
            "options": opts.to_dict(),
            "sums": {},
            "seconds": 0.0,
        }
    steps = stage.steps_per_epoch()
    total = opts.epochs * steps
    warmup = min(opts.warmup_steps, max(1, total // 10))
    t0 = time.monotonic()
    seconds0 = float(state.get("seconds", 0.0))
    log.info(
        "stage %s: %d items, %d steps/epoch, %d epochs", opts.stage, len(stage.items), steps, opts.epochs
    )

    def stop_now() -> bool:
        if opts.max_steps is not None and state["global_step"] >= opts.max_steps:
            return True
        return opts.max_minutes is not None and (time.monotonic() - t0) > opts.max_minutes * 60

    while state["epoch"] < opts.epochs:
        epoch = state["epoch"]
        order = stage.permutation(opts.seed, epoch)
        stage.train_mode(bundle)
        bar = tqdm(
            total=steps, initial=state["step_in_epoch"], desc=f"{opts.stage} {epoch + 1}/{opts.epochs}",
            unit="step", disable=not opts.progress, leave=False,
        )  # fmt: skip
        while state["step_in_epoch"] < steps:
            step = state["step_in_epoch"]
            seed = step_seed(opts.seed, epoch, step)
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for group in opt.param_groups:
                group["lr"] = lr_at(state["global_step"], total, peak, warmup)
            idx = order[step * opts.batch_size : (step + 1) * opts.batch_size]
            loss, parts = stage.loss(bundle, idx, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            state["step_in_epoch"] += 1
            state["global_step"] += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                state["sums"][k] = state["sums"].get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            state["seconds"] = seconds0 + time.monotonic() - t0
            if stop_now():
                bar.close()
                state["stopped"] = (
                    "max_steps"
                    if opts.max_steps is not None and state["global_step"] >= opts.max_steps
                    else "max_minutes"
                )
                _save(opts.out, bundle, opt, state)
                log.info("stage %s stopped at step %d (resumable)", opts.stage, state["global_step"])
                return state
            if state["global_step"] % opts.save_every == 0:
                _save(opts.out, bundle, opt, state)
        bar.close()
        n = max(1, state["step_in_epoch"])
        record = {
            "epoch": epoch + 1,
            "global_step": state["global_step"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(seconds0 + time.monotonic() - t0, 1),
            **{k: v / n for k, v in state["sums"].items()},
        }
        record.update({f"val_{k}": v for k, v in stage.validate(bundle).items()})
        stage.train_mode(bundle)
        with (opts.out / METRICS_FILE).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info("stage %s epoch %d: %s", opts.stage, epoch + 1, json.dumps(record))
        state.update(epoch=epoch + 1, step_in_epoch=0, sums={}, last_metrics=record)
        state["done"] = state["epoch"] >= opts.epochs
        _save(opts.out, bundle, opt, state)
    return state
