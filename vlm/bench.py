"""``zebra bench vlm``: latency of the VLM on a synthetic slice (no data set needed)."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np


def synthetic_slice(size: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """A synthetic brain-like uint8 slice with one lesion (Zebra's synthetic generator)."""
    from zebra_datasets.synth.lesions import render_lesion, sample_lesion
    from zebra_datasets.synth.phantom import make_brain

    rng = np.random.default_rng(seed)
    anatomy = make_brain(rng, size, "T1c")
    spec = sample_lesion(rng, "solid_homogeneous", anatomy, 220.0 / size)
    image, _ = render_lesion(spec, anatomy, anatomy.image, scale)
    noisy = image + 0.015 * np.random.default_rng(seed + 1).standard_normal(image.shape)
    return np.clip(noisy * 255, 0, 255).astype(np.uint8)


def _percentiles(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times)
    return {
        "p50_s": float(np.percentile(arr, 50)),
        "p95_s": float(np.percentile(arr, 95)),
        "mean_s": float(arr.mean()),
        "min_s": float(arr.min()),
    }


def bench_vlm(
    spec: str, *, n: int = 50, size: int = 512, threads: int = 2, warmup: int = 3
) -> dict[str, Any]:
    """Times ``analyze_image`` ``n`` times (after ``warmup`` runs) and ``analyze`` with a prior."""
    import torch

    from vlm.registry import create_vlm

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    backend = create_vlm(spec)
    load_s = time.perf_counter() - t0
    current = synthetic_slice(size, seed=1, scale=1.3)
    prior = synthetic_slice(size, seed=1, scale=1.0)
    for _ in range(warmup):
        backend.analyze_image(current)
    single = []
    for _ in range(n):
        t = time.perf_counter()
        result = backend.analyze_image(current)
        single.append(time.perf_counter() - t)
    pair = []
    for _ in range(max(3, n // 5)):
        t = time.perf_counter()
        backend.analyze(current, prior=prior)
        pair.append(time.perf_counter() - t)
    return {
        "model": backend.name,
        "n": n,
        "image_size": [size, size],
        "threads": threads,
        "machine": platform.machine(),
        "load_s": load_s,
        "single_image": _percentiles(single),
        "with_prior": _percentiles(pair),
        "gate_accepted": bool(result.gate.accepted),
        "target_p50_s": 0.3,
    }
