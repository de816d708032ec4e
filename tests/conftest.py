"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``../shared/data`` beside the checkout, or ``$ZEBRA_SHARED_DATA``."""
    return Path(os.environ.get("ZEBRA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets folder; tests using it skip when it is absent (users outside this workplace)."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root}")
    return root


@pytest.fixture(scope="session")
def medpix_root(shared_data: Path) -> Path:
    root = shared_data / "medpix-2.0"
    if not (root / "Case_topic.json").is_file():
        pytest.skip("MedPix 2.0 not found")
    return root


@pytest.fixture(scope="session")
def tumor_root(shared_data: Path) -> Path:
    root = shared_data / "brain-tumor-mri"
    if not (root / "data.yaml").is_file():
        pytest.skip("brain-tumour MRI set not found")
    return root


@pytest.fixture
def zebra_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Points ZEBRA_DATA_DIR at a fresh temporary folder and resets the cached settings."""
    from zebra.config import get_settings

    data_dir = tmp_path / "zebra-data"
    data_dir.mkdir()
    monkeypatch.setenv("ZEBRA_DATA_DIR", str(data_dir))
    monkeypatch.delenv("ZEBRA_CONFIG", raising=False)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()
