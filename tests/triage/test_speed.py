"""What keeps triage fast: threads per worker, one searcher per process for rarity, the benchmark's real
worklists, load average and per-node profile."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from triage.agent_adapter import AnalyserSpec, _Rarity
from triage.engine import TriageOptions
from triage.worker import limit_threads
from zebra.errors import ConfigError


def test_workers_use_one_thread_unless_told() -> None:
    assert TriageOptions(workers=1).worker_threads() == 1
    assert TriageOptions(workers=2, engine="ray").worker_threads() == 1
    assert TriageOptions(workers=2, threads=3).validate().worker_threads() == 3
    with pytest.raises(ConfigError):
        TriageOptions(threads=0).validate()


def test_limit_threads_sets_loaded_libraries_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeTorch:
        threads = 8

        @classmethod
        def get_num_threads(cls) -> int:
            return cls.threads

        @classmethod
        def set_num_threads(cls, n: int) -> None:
            cls.threads = n

    class FakeFaiss:
        omp: list[int] = []

        @classmethod
        def omp_set_num_threads(cls, n: int) -> None:
            cls.omp.append(n)

    # Stand-ins for loaded libraries: importing torch here would cost seconds.
    monkeypatch.setitem(sys.modules, "torch", FakeTorch)
    monkeypatch.setitem(sys.modules, "faiss", FakeFaiss)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    limit_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1" and FakeTorch.threads == 1 and FakeFaiss.omp == [1]
    limit_threads(None)  # leaves everything alone
    assert os.environ["OMP_NUM_THREADS"] == "1" and FakeTorch.threads == 1 and FakeFaiss.omp == [1]


class _Searcher:
    def __init__(self) -> None:
        self.calls = 0

    def search_image(self, image: Any, k: int = 1) -> list[str]:
        self.calls += 1
        return [f"hit{k}"]


def test_rarity_uses_the_agents_searcher(tmp_path: Path) -> None:
    made: list[_Searcher] = []

    def factory() -> _Searcher:
        made.append(_Searcher())
        return made[-1]

    rarity = _Rarity(str(tmp_path), factory)
    assert rarity.nearest("img") == ["hit1"] and rarity.nearest("img", k=3) == ["hit3"]
    assert len(made) == 1 and made[0].calls == 2  # created once, on first use
    assert _Rarity(str(tmp_path / "missing"), factory).nearest("img") == [] and len(made) == 1


def test_bench_on_real_worklists_reports_load_and_profile(
    csv_worklist: Path, nova_worklist: Path, zebra_env: Path, tmp_path: Path
) -> None:
    from triage.bench import bench_triage

    report = bench_triage(
        n=14,
        workers=[1],
        engines=["local"],
        analyser=AnalyserSpec(analyser="fake"),
        worklists=[csv_worklist, nova_worklist],
        work_dir=tmp_path,
        profile_n=2,
    )
    assert report["studies"] == 14 and len(report["worklists"]) == 2  # 12 CSV studies + 2 NOVA cases
    assert report["profile"]["studies"] == 2 and report["profile"]["study_seconds"] >= 0
    (entry,) = report["results"]
    assert entry["done"] == 14 and entry["errors"] == 0 and entry["studies_per_minute"] > 0
    load = entry["load_average"]
    assert set(load) == {"start", "mean", "max", "end"} and load["max"] >= load["mean"] >= 0


def test_routed_questions_are_encoded_once() -> None:
    import numpy as np

    from agent.resources import QuestionCache

    calls: list[list[str]] = []

    class Embedder:
        dim = 3

        def encode(self, texts: list[str], **_: Any) -> np.ndarray:
            calls.append(list(texts))
            return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)

    cached = QuestionCache(Embedder(), size=1)
    first = cached.encode(["what is it?"])
    first[0, 0] = -1.0  # callers may modify what they get
    np.testing.assert_array_equal(cached.encode(["what is it?"]), [[11.0, 1.0, 0.0]])
    assert calls == [["what is it?"]] and cached.dim == 3
    cached.encode(["a", "bb"])  # batches pass through
    cached.encode(["other"])  # evicts the first question (size 1)
    cached.encode(["what is it?"])
    assert calls == [["what is it?"], ["a", "bb"], ["other"], ["what is it?"]]
