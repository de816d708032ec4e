from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def cli():
    import zebra_cli.vlm  # noqa: F401  (registers the commands until it is in COMMAND_MODULES)
    from zebra_cli import main

    def run(argv: list[str]) -> int:
        try:
            main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    return run


def test_analyze_writes_json_and_overlays(cli, zebra_env, tmp_path, tiny_checkpoint, brain_slice) -> None:
    from vlm.bench import synthetic_slice

    current, prior = tmp_path / "current.png", tmp_path / "prior.png"
    Image.fromarray(brain_slice).save(current)
    Image.fromarray(synthetic_slice(256, seed=0, scale=0.6)).save(prior)
    out = tmp_path / "out"
    code = cli(
        [
            "analyze",
            str(current),
            "--prior",
            str(prior),
            "--out",
            str(out),
            "--vlm",
            f"builtin:{tiny_checkpoint}",
        ]
    )
    assert code == 0
    data = json.loads((out / "analysis.json").read_text())
    assert data["current"]["gate"]["accepted"] is True
    assert data["current"]["heatmap"]["shape"] == [256, 256]
    assert data["change"]["label"] in ("worsening", "stable", "improved")
    assert abs(sum(data["change"]["probabilities"].values()) - 1) < 1e-4
    for name in ("overlay.png", "diff_overlay.png"):
        with Image.open(out / name) as img:
            assert img.size == (256, 256) and img.mode == "RGB"


def test_analyze_gated_input_and_missing_checkpoint(
    cli, zebra_env, tmp_path, tiny_checkpoint, capsys
) -> None:
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8)).save(noise)
    out = tmp_path / "o"
    assert (
        cli(["analyze", str(noise), "--out", str(out), "--vlm", f"builtin:{tiny_checkpoint}", "--json"]) == 0
    )
    data = json.loads((out / "analysis.json").read_text())
    assert data["current"]["gate"]["kind"] == "noise" and data["current"]["caption"] is None
    assert not (out / "overlay.png").exists()
    assert (
        cli(["analyze", str(noise), "--out", str(out), "--vlm", f"builtin:{tmp_path / 'none.safetensors'}"])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
