"""A small seeded fuzz sample through the real harness, and the CLI commands."""

from __future__ import annotations

import json
import random

from pydicom.data import get_testdata_file
from typer.testing import CliRunner

import zebra_cli.intake  # noqa: F401  (registers the commands on the shared Typer apps)
from zebra_cli.app import app
from zebra_intake.fuzz import build_seeds, make_case, run_fuzz
from zebra_intake.mutate import mutate


def test_fuzz_sample_has_no_crash_or_hang():
    result = run_fuzz(300, seed=7, workers=2, timeout_s=2.0)
    assert sum(result["counts"].values()) == 300
    assert result["counts"]["crash"] == 0, result["crashes"]
    assert result["counts"]["hang"] == 0, result["hangs"]
    assert result["counts"]["ok"] > 0 and result["counts"]["error"] > 0  # the mutations do bite


def test_fuzz_cases_are_reproducible(tmp_path):
    seeds = build_seeds(tmp_path)
    assert any(p.name.endswith(".nii.gz") for p in seeds) and any(p.suffix == ".png" for p in seeds)
    assert len(seeds) > 200
    first = make_case(seeds, 3, 41)
    again = make_case(seeds, 3, 41)
    assert first[0] == again[0] and first[1] == again[1] and first[2] == again[2]
    data = b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4
    assert mutate(data, random.Random(1)) == mutate(data, random.Random(1))
    assert mutate(data, random.Random(1))[0] != data


def test_inspect_json_has_no_patient_identifiers(zebra_env):
    path = get_testdata_file("CT_small.dcm")  # PatientName CompressedSamples^CT1, PatientID 1CT1
    result = CliRunner().invoke(app, ["data", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # log lines may go to stderr
    assert payload["source_kind"] == "dicom"
    assert payload["series"][0]["images"][0]["shape"] == [128, 128]
    assert "PatientName" in payload["deid"]["emptied"]
    assert payload["deid"]["private_tags_removed"] > 0
    assert "CompressedSamples" not in result.output and "1CT1" not in result.output


def test_inspect_table_output(zebra_env):
    result = CliRunner().invoke(app, ["data", "inspect", get_testdata_file("MR_small.dcm")])
    assert result.exit_code == 0, result.output
    assert "De-identification" in result.output and "MR" in result.output
    assert "CompressedSamples" not in result.output


def test_bench_intake_fuzz_prints_json():
    result = CliRunner().invoke(app, ["bench", "intake-fuzz", "--cases", "20", "--workers", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["cases"] == 20 and sum(payload["counts"].values()) == 20


def test_bench_intake_fuzz_reproduces_one_case():
    result = CliRunner().invoke(app, ["bench", "intake-fuzz", "--case", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["case"] == 5 and payload["outcome"] in ("ok", "error")
