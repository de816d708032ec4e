"""Synthetic generator: determinism, boxes that contain the masks, pairs, marking as synthetic."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.convert import generate_synthetic
from zebra_datasets.convert.synthetic import CHANGES, convert_synthetic
from zebra_datasets.nova import read_nova
from zebra_datasets.synth.lesions import LESION_TYPES


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "dataset.json"  # dataset.json holds the creation time
    }


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "a"
    started = time.perf_counter()
    generate_synthetic(out, n_cases=14, seed=3, size=128)
    assert time.perf_counter() - started < 20  # generous on a shared machine; ~1 s alone
    return out


def test_same_seed_same_bytes_other_seed_differs(synthetic_set: Path, tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "b", n_cases=14, seed=3, size=128)
    first, second = _tree_bytes(synthetic_set), _tree_bytes(tmp_path / "b")
    assert first.keys() == second.keys() and len(first) > 14
    assert first == second
    generate_synthetic(tmp_path / "c", n_cases=2, seed=4, size=128)
    other = _tree_bytes(tmp_path / "c")
    assert other["data/nova-v1.parquet"] != first["data/nova-v1.parquet"]


def test_boxes_contain_the_lesion_masks(synthetic_set: Path) -> None:
    ds = read_nova(synthetic_set)
    for record in ds:
        mask = np.asarray(Image.open(synthetic_set / record.meta["mask_path"])) > 0
        image = ds.load_image(record)
        assert image.size == (128, 128) and image.mode == "L"
        assert mask.any() == bool(record.bboxes)
        covered = np.zeros_like(mask)
        for box in record.gold_boxes:
            x1, y1, x2, y2 = (int(v) for v in box.xyxy())
            assert box.within(128, 128) and box.label == record.final_diagnosis
            covered[y1:y2, x1:x2] = True
            assert mask[y1:y2, x1:x2].any()  # no empty box
        assert not (mask & ~covered).any(), record.scan_id
        attrs = json.loads(record.meta["attributes"])
        assert attrs["type"] == record.meta["lesion_type"]
        assert attrs["n_foci"] == len(record.bboxes)


def test_everything_is_marked_synthetic(synthetic_set: Path) -> None:
    ds = read_nova(synthetic_set)
    assert ds.is_synthetic and ds.info["synthetic"] is True
    assert all(r.is_synthetic for r in ds)
    assert all(r.caption_text.startswith("Synthetic ") and "not a real patient" in r.caption_text for r in ds)
    assert all("no real patient" in r.clinical_history for r in ds)
    assert all(r.final_diagnosis.startswith("synthetic ") for r in ds)
    assert {r.meta["lesion_type"] for r in ds} == set(LESION_TYPES)  # 14 cases cycle all 7 types


def test_pairs_prior_current_and_change_labels(synthetic_set: Path) -> None:
    ds = read_nova(synthetic_set)
    changes: Counter[str] = Counter()
    for case_id, rows in ds.by_case().items():
        if len(rows) == 1:
            assert rows[0].scan_id == f"{case_id}_scan"
            continue
        prior, current = rows
        assert prior.scan_id == f"{case_id}_prior" and current.meta["prior_scan_id"] == prior.scan_id
        assert prior.meta["pair_role"] == "prior" and current.meta["pair_role"] == "current"
        change = current.meta["change"]
        changes[change] += 1
        size_prior = json.loads(prior.meta["attributes"])["size_mm"]
        size_now = json.loads(current.meta["attributes"])["size_mm"]
        if change == "worsening":
            assert size_now > size_prior
        elif change == "improved":
            assert size_now < size_prior
        else:
            assert abs(size_now - size_prior) <= 0.25 * size_prior + 2
        assert "Compared with the prior synthetic scan" in current.caption_text
        # Re-acquisition: the images differ even when the lesion is stable.
        assert ds.load_image(prior).tobytes() != ds.load_image(current).tobytes()
    assert set(changes) == set(CHANGES)


def test_backgrounds_and_cli_adapter(tmp_path: Path, png) -> None:
    backgrounds = tmp_path / "bg"
    for i in range(2):
        png(backgrounds / f"bg{i}.png", size=(160, 120), value=40 * i)
    report = convert_synthetic(
        str(backgrounds), tmp_path / "out", cases=5, limit=3, seed=1, size=96, pairs=False
    )
    assert report.rows == 3 and report.cases == 3
    ds = read_nova(tmp_path / "out")
    assert [r.meta["background"] for r in ds] == ["bg0.png", "bg1.png", "bg0.png"]
    assert all(r.meta["sequence"] == "background" for r in ds)
    with pytest.raises(ConfigError):
        convert_synthetic("-", tmp_path / "x", split="train")
    with pytest.raises(DatasetError, match="No background image"):
        convert_synthetic(str(tmp_path / "out" / "data"), tmp_path / "y")
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path / "z", n_cases=0)
