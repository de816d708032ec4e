"""Unit tests of the ``hf:`` backend's heatmap helpers (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlm.hf_maps import area_fraction, boxes_from_grid, change_heatmap, limit_pixels, to_pil_rgb, upsample


def test_boxes_from_grid_finds_connected_components_best_first() -> None:
    grid = np.zeros((4, 8), np.float32)
    grid[0:2, 0:2] = 0.6  # component A: 2x2 in the top-left
    grid[3, 5:8] = [0.7, 0.9, 0.55]  # component B: a row at the bottom right, stronger
    grid[2, 3] = 0.49  # below threshold: no box
    boxes = boxes_from_grid(grid, (40, 80), threshold=0.5)
    assert len(boxes) == 2
    b, a = boxes
    assert b.score == pytest.approx(0.9) and a.score == pytest.approx(0.6)
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((50.0, 30.0, 80.0, 40.0))
    assert (a.x1, a.y1, a.x2, a.y2) == pytest.approx((0.0, 0.0, 20.0, 20.0))
    assert boxes_from_grid(grid, (40, 80), threshold=0.5, max_boxes=1) == [b]
    assert boxes_from_grid(grid, (40, 80), threshold=0.95) == []


def test_diagonal_patches_are_separate_components() -> None:
    grid = np.eye(3, dtype=np.float32)
    assert len(boxes_from_grid(grid, (30, 30), threshold=0.5)) == 3


def test_upsample_keeps_range_and_size() -> None:
    probs = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    up = upsample(probs, (37, 51))
    assert up.shape == (37, 51) and up.dtype == np.float32
    assert up.min() >= 0.0 and up.max() <= 1.0
    assert up[0, -1] > up[0, 0]  # the hot corner stays hot


def test_change_heatmap_over_current_image() -> None:
    current = np.zeros((20, 30), np.float32)
    current[5:10, 5:10] = 1.0
    prior = np.zeros((10, 10), np.float32)
    diff = change_heatmap(current, prior)
    assert diff.shape == (20, 30) and float(diff.max()) == pytest.approx(1.0)
    assert area_fraction(diff, 0.5) == pytest.approx(25 / 600)
    assert float(change_heatmap(current, current).max()) == 0.0


def test_image_conversion_and_pixel_limit() -> None:
    scan = (np.arange(64 * 32, dtype=np.float32).reshape(64, 32) * 3.7 - 1000).astype(np.int16)
    pil = to_pil_rgb(scan)
    assert pil.mode == "RGB" and pil.size == (32, 64)
    arr = np.asarray(pil)
    assert arr[0, 0, 0] < 10 and arr[-1, -1, 0] > 245  # windowed to the full 8-bit range
    small = limit_pixels(Image.new("RGB", (400, 100)), 100 * 25)
    assert small.size[0] * small.size[1] <= 100 * 25 and small.size[0] == 4 * small.size[1]
    same = Image.new("RGB", (10, 10))
    assert limit_pixels(same, None) is same
