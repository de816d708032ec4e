from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlm.train.bundle import Bundle
from vlm.train.data import load_image_set
from vlm.train.loop import TrainOptions, train_stage
from vlm.train.stages import AnoStage, DiffStage


@pytest.fixture(scope="module")
def image_set(synthetic_nova, tmp_path_factory):
    return load_image_set(
        synthetic_nova, size=64, cache_dir=tmp_path_factory.mktemp("cache"), masks=True, progress=False
    )


def test_cached_set_has_boxes_attributes_and_pairs(image_set) -> None:
    assert len(image_set) == 9  # 3 pairs + 3 single scans
    assert (np.diff(image_set.box_offsets) > 0).sum() >= 6
    assert (image_set.attrs >= 0).any()
    currents = np.where(image_set.partner >= 0)[0]
    assert len(currents) == 3 and set(image_set.change[currents]) == {0, 1, 2}
    assert image_set.masks.shape == (9, 64, 64)
    boxes = image_set.boxes
    assert (boxes[:, 2] > boxes[:, 0]).all() and boxes.max() <= 64


def test_a_few_steps_reduce_the_ano_loss(tiny_config, image_set) -> None:
    bundle = Bundle.fresh(tiny_config, seed=0)
    stage = AnoStage(image_set, batch_size=6)
    params = stage.trainable(bundle)
    opt = torch.optim.AdamW(params, lr=3e-3)
    stage.train_mode(bundle)
    idx = stage.items[:6]
    batch = stage.batch(idx, torch.Generator().manual_seed(0), aug=False)
    stage.batch = lambda *a, **k: batch  # the same batch every step: the loss must go down
    losses = []
    for _ in range(8):
        loss, _ = stage.loss(bundle, idx, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    # The diff modules were frozen by this stage.
    assert all(not p.requires_grad for p in bundle.vlm.change_head.parameters())


def test_diff_stage_trains_only_the_change_module(tiny_config, image_set) -> None:
    bundle = Bundle.fresh(tiny_config, seed=0)
    stage = DiffStage(image_set, batch_size=3)
    before = {k: v.clone() for k, v in bundle.vlm.state_dict().items()}
    params = stage.trainable(bundle)
    opt = torch.optim.AdamW(params, lr=1e-3)
    stage.train_mode(bundle)
    loss, parts = stage.loss(bundle, stage.items, torch.Generator().manual_seed(1))
    loss.backward()
    opt.step()
    after = bundle.vlm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(
        k.split(".")[0] in ("diff_in", "diff", "change_head", "diff_heat") for k in changed
    )
    assert set(parts) >= {"change", "diff_heat"}
    # With cached frozen features (2 jittered variants per pair) the same loss is computed from the cache.
    cached = DiffStage(image_set, batch_size=3, feature_variants=2, seed=0)
    loss2, _ = cached.loss(bundle, cached.items, torch.Generator().manual_seed(1))
    assert cached._cache["labels"].shape == (6,) and cached._cache["p16c"].dtype == torch.float16
    assert torch.isfinite(loss2)


def _opts(tmp, data, config, cache, **kw) -> TrainOptions:
    return TrainOptions(
        stage="ano", data=[data], out=tmp, epochs=2, batch_size=4, config=config, cache_dir=cache,
        progress=False, save_every=2, seed=5, **kw,
    )  # fmt: skip


def test_resumed_training_matches_uninterrupted(tiny_config, synthetic_nova, tmp_path) -> None:
    cache = tmp_path / "cache"
    full = train_stage(_opts(tmp_path / "full", synthetic_nova, tiny_config, cache))
    assert full["done"] and full["global_step"] == 4
    part = train_stage(_opts(tmp_path / "part", synthetic_nova, tiny_config, cache, max_steps=3))
    assert not part["done"] and part["global_step"] == 3
    with pytest.raises(Exception, match="already holds"):
        train_stage(_opts(tmp_path / "part", synthetic_nova, tiny_config, cache))
    resumed = train_stage(_opts(tmp_path / "part", synthetic_nova, tiny_config, cache, resume=True))
    assert resumed["done"] and resumed["global_step"] == 4
    a = Bundle.load(tmp_path / "full").vlm.state_dict()
    b = Bundle.load(tmp_path / "part").vlm.state_dict()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert "heat" in json.loads(lines[0])


def test_held_out_rows_are_never_trained_on(tmp_path) -> None:
    from vlm.train.errors import TrainingDataError
    from zebra_datasets import BBox, NovaRecord, write_nova

    img = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    rec = NovaRecord("a.png", "images/a.png", "c", "s", bboxes=[BBox(1, 1, 5, 5)], meta={"split": "valid"})
    rec.image_source = img
    write_nova([rec], tmp_path / "nova", images="copy")
    with pytest.raises(TrainingDataError, match="held-out"):
        load_image_set(tmp_path / "nova", size=64, cache_dir=tmp_path / "cache", progress=False)
