"""zebra vlm eval --data under both protocols, with a stand-in backend (no weights needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eval.metrics.localisation import mean_localisation
from vlm.eval.run import evaluate_detection
from zebra.errors import ConfigError
from zebra_datasets.records import BBox, NovaRecord

GOLD = [20.0, 20.0, 40.0, 40.0]
#: filename -> (label_status, gold boxes, predicted boxes)
ROWS: dict[str, tuple[str, list[list[float]], list[list[float]]]] = {
    "hit.png": ("labelled", [GOLD], [[*GOLD, 0.9]]),
    "late.png": ("labelled", [GOLD], [[0.0, 0.0, 5.0, 5.0, 0.95], [*GOLD, 0.6]]),
    "normal_quiet.png": ("normal", [], []),
    "normal_boxed.png": ("normal", [], [[10.0, 10.0, 20.0, 20.0, 0.7]]),
    "edge.png": ("labelled", [[50.0, 50.0, 64.0, 64.0]], [[50.0, 50.0, 80.0, 80.0, 0.8]]),  # clamped: exact
    "unknown.png": ("unlabelled", [], [[0.0, 0.0, 30.0, 30.0, 0.9]]),  # boxes unknown: left out
}


class _Backend:
    """Returns the boxes of :data:`ROWS` for each image, in the order of the data set's rows."""

    name = "stand-in"

    def __init__(self, order: list[str]) -> None:
        self.order = list(order)
        self.gate = SimpleNamespace(decide=lambda *a: SimpleNamespace(accepted=True))

    def predict(self, images: list[np.ndarray], batch_size: int = 16) -> list[Any]:
        out = []
        for image in images:
            boxes = np.asarray(ROWS[self.order.pop(0)][2], np.float64).reshape(-1, 5)
            gray = image.astype(np.float32) / 255.0
            out.append(
                SimpleNamespace(
                    boxes=boxes,
                    heatmap=np.zeros(image.shape[:2]),
                    anomaly=0.5,
                    prepared=SimpleNamespace(gray=gray, rgb=None),
                    embedding=None,
                    trunk=None,
                )
            )
        return out


@pytest.fixture
def nova_set(tmp_path: Path) -> Path:
    from zebra_datasets.nova_write import write_nova

    records = []
    for i, (name, (status, gold, _)) in enumerate(ROWS.items()):
        path = tmp_path / "src" / name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((64, 64), 40 + 10 * i, np.uint8)).save(path)
        records.append(
            NovaRecord(
                filename=name,
                image_path=f"images/{name}",
                case_id=f"c{i}",
                scan_id=f"c{i}",
                bboxes=[BBox.from_xyxy(*g) for g in gold],
                meta={"label_status": status, "final_diagnosis": "x" if status != "unlabelled" else None},
                image_source=path,
            )
        )
    return write_nova(records, tmp_path / "nova")


def test_vlm_detection_under_both_protocols(nova_set: Path) -> None:
    from zebra_datasets import read_nova

    order = [r.filename for r in read_nova(nova_set).records if r.meta.get("label_status") != "unlabelled"]
    known = [ROWS[n] for n in order]
    for protocol in ("nova", "coco"):
        report = evaluate_detection(_Backend(order), nova_set, protocol=protocol)
        expected = mean_localisation([(p, g, (64.0, 64.0)) for _, g, p in known], protocol=protocol)
        assert report["protocol"] == protocol and report["images"] == 5
        assert report["map30"] == pytest.approx(expected["map_0.3"], abs=1e-12)
        assert report["map50"] == pytest.approx(expected["map_0.5"], abs=1e-12)
        assert report["map50_95"] == pytest.approx(expected["map_0.5_0.95"], abs=1e-12)
        assert report["acc50"] == pytest.approx(expected["acc50"], abs=1e-12)
        assert protocol in report["map_definition"]
    # nova by hand: AP@0.5 hit 1, late 1/2 (11 points of precision 1/2), quiet normal 1, boxed normal 0, clamped
    # edge 1 -> 3.5 / 5; ACC50 hit, late, quiet, edge -> 4 / 5
    nova = evaluate_detection(_Backend(order), nova_set)
    assert nova["map50"] == pytest.approx(3.5 / 5) and nova["acc50"] == pytest.approx(4 / 5)
    with pytest.raises(ConfigError, match="protocol"):
        evaluate_detection(_Backend(order), nova_set, protocol="voc")
