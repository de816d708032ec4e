"""Fixtures of the VLM tests: a tiny random-init model config and a tiny synthetic NOVA set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_config():
    """A VLM config small enough for CPU tests (64 px, width-8 ResNet, 32-d tokens)."""
    from vlm.model.config import VLMConfig

    return VLMConfig(arch="zebra-test-tiny", clip_cfg=TINY_CLIP, image_size=64, dim=32, heads=2)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    import torch

    from vlm.model.network import ZebraVLM

    torch.manual_seed(0)
    return ZebraVLM(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """The tiny random model saved as a VLM checkpoint (no gate statistics)."""
    from vlm.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(tiny_model, path, {"name": "tiny"})
    return path


@pytest.fixture(scope="session")
def synthetic_nova(tmp_path_factory) -> Path:
    """6 synthetic cases at 64 px with longitudinal pairs, masks and attributes."""
    from zebra_datasets.convert.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("syn") / "nova"
    generate_synthetic(root, n_cases=6, seed=3, size=64, pairs=True)
    return root


@pytest.fixture(scope="session")
def brain_slice() -> np.ndarray:
    """A synthetic 256 px brain slice with a lesion (uint8)."""
    from vlm.bench import synthetic_slice

    return synthetic_slice(256, seed=0)


@pytest.fixture(scope="session")
def nonsquare_slice(brain_slice) -> np.ndarray:
    """A 200 x 256 crop: letterboxing must map results back to this shape."""
    return np.ascontiguousarray(brain_slice[28:228, :])
