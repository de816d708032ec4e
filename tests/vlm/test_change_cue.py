"""The change head's size-change cue and the diff stage's cached validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vlm.model.config import VLMConfig
from vlm.model.network import ZebraVLM, change_cue


@pytest.fixture(scope="module")
def image_set(synthetic_nova, tmp_path_factory):
    from vlm.train.data import load_image_set

    return load_image_set(
        synthetic_nova, size=64, cache_dir=tmp_path_factory.mktemp("cache"), masks=True, progress=False
    )


def _heat(radius: float, size: int = 32, background: float = -3.0) -> torch.Tensor:
    """Centre logits of one round lesion on a quiet background, ``(1, 1, size, size)``."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
    return torch.from_numpy(np.where(disc, 3.0, background).astype(np.float32))[None, None]


def test_excess_cue_follows_lesion_size_where_the_summed_mass_barely_moves() -> None:
    small, large = _heat(2.0), _heat(3.5)  # area ratio ~3 (a synthetic "worsening" is 1.7-2.6)
    grown = change_cue(large, small, "excess")[0]
    shrunk = change_cue(small, large, "excess")[0]
    same = change_cue(small, small.clone(), "excess")[0]
    assert grown.shape == (4,) and (grown > 0.7).all()
    assert torch.allclose(shrunk, -grown, atol=1e-5)
    assert torch.equal(same, torch.zeros(4))
    # The old cue: ~1000 background cells dominate the sum, so the same growth moves it far less.
    mass = change_cue(large, small, "mass")[0, 0]
    assert 0 < float(mass) < 0.5 * float(grown.min())
    with pytest.raises(ValueError, match="unknown change cue"):
        change_cue(large, small, "area")


def test_checkpoints_without_a_cue_keep_the_summed_mass_head(tiny_config) -> None:
    data = {k: v for k, v in tiny_config.to_dict().items() if k != "change_cue"}
    legacy = VLMConfig.from_dict(data)
    assert legacy.change_cue == "mass" and VLMConfig.from_dict(tiny_config.to_dict()).change_cue == "excess"
    d = tiny_config.dim
    assert ZebraVLM(legacy).change_head[0].in_features == 4 * d + 1
    assert ZebraVLM(tiny_config).change_head[0].in_features == 4 * d + 4


def test_diff_stage_upgrades_a_legacy_change_head_and_caches_validation(tiny_config, image_set) -> None:
    from vlm.train.bundle import Bundle
    from vlm.train.stages import DiffStage, change_metrics

    bundle = Bundle.fresh(dataclasses.replace(tiny_config, change_cue="mass"), seed=0)
    stage = DiffStage(image_set, batch_size=3, val=image_set, feature_variants=1, seed=0)
    params = stage.trainable(bundle)
    head = bundle.vlm.change_head
    assert bundle.vlm.config.change_cue == "excess" and head[0].in_features == 4 * tiny_config.dim + 4
    assert any(p is head[0].weight for p in params)
    first = stage.validate(bundle)
    assert stage._val_cache["labels"].shape == (3,)  # 3 pairs
    # The cached validation equals the full pass through the network.
    assert first == change_metrics(stage, bundle, image_set)
    assert set(first) >= {"change_accuracy", "recall_stable", "recall_worsening", "recall_improved"}
