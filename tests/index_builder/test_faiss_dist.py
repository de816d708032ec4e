"""FAISS extras: exactly one distribution, a clear error otherwise (pyproject and runtime)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from index_builder import faiss_dist
from zebra.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_cpu_and_gpu_faiss_are_separate_extras_and_not_core() -> None:
    project = _project()
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "faiss" not in core
    assert [r for r in extras["cpu"] if r.startswith("faiss")] == ["faiss-cpu>=1.11"]
    assert all(r.startswith("faiss-gpu") for r in extras["gpu"] if "faiss" in r)
    assert not any("faiss-cpu" in r for r in extras["gpu"])


def _fake_versions(monkeypatch: pytest.MonkeyPatch, installed: dict[str, str]) -> None:
    def version(name: str) -> str:
        if name in installed:
            return installed[name]
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(faiss_dist.metadata, "version", version)


def test_two_faiss_distributions_are_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_versions(monkeypatch, {"faiss-cpu": "1.15.1", "faiss-gpu": "1.15.1"})
    with pytest.raises(ConfigError, match="More than one FAISS") as err:
        faiss_dist.require_faiss()
    assert "zebra-dx[cpu]" in err.value.hint


def test_no_faiss_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_versions(monkeypatch, {})
    with pytest.raises(ConfigError, match="No FAISS") as err:
        faiss_dist.check_faiss_install()
    assert "zebra-dx[gpu]" in err.value.hint


def test_this_environment_has_exactly_one() -> None:
    assert len(faiss_dist.installed_faiss()) == 1
    assert faiss_dist.require_faiss().IndexFlatIP(4).d == 4
