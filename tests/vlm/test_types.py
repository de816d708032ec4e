from __future__ import annotations

import json

import numpy as np

from vlm.types import Attributes, Box, ChangeAnalysis, GateResult, ImageAnalysis, StudyAnalysis


def _analysis() -> ImageAnalysis:
    return ImageAnalysis(
        gate=GateResult(True, None, "medical", {"std": 0.2, "bad": float("nan")}),
        anomaly_score=0.87,
        boxes=[Box(1.5, 2.0, 30.0, 40.0, 0.9, "finding")],
        heatmap=np.zeros((50, 60), np.float32),
        attributes=Attributes(
            site="right frontal lobe", size_mm=12.0, size_class="medium", confidences={"site": 0.7}
        ),
        caption="Focal abnormality.",
        embedding=np.ones(8, np.float32),
        model="builtin:test",
    )


def test_study_analysis_json_round_trip() -> None:
    study = StudyAnalysis(
        current=_analysis(),
        prior=_analysis(),
        change=ChangeAnalysis(
            "worsening", 0.8, {"worsening": 0.8, "stable": 0.15, "improved": 0.05}, None, "Larger."
        ),
    )
    text = json.dumps(study.to_dict(), allow_nan=False)  # NaN must have become null
    back = StudyAnalysis.from_dict(json.loads(text))
    assert back.current.boxes == study.current.boxes
    assert back.current.attributes == study.current.attributes
    assert back.change == ChangeAnalysis("worsening", 0.8, study.change.probabilities, None, "Larger.")
    assert back.current.gate.scores == {"std": 0.2}
    data = study.to_dict()
    assert data["current"]["heatmap"] == {"shape": [50, 60], "dtype": "float32"}
    assert data["current"]["embedding"]["shape"] == [8]


def test_gated_analysis_serialises_nones() -> None:
    gated = ImageAnalysis(GateResult(False, "noise", "noise", {}), None, [], None, None, None, None, "m")
    data = json.loads(json.dumps(gated.to_dict()))
    assert data["anomaly_score"] is None and data["heatmap"] is None and data["gate"]["kind"] == "noise"
    assert ImageAnalysis.from_dict(data).gate.accepted is False
