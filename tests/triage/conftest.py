"""Fixtures of the triage tests: small PNG studies, CSV and synthetic NOVA worklists, a SQLite store."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

#: Runs the ``zebra`` CLI with the triage commands registered (the lead adds them to COMMAND_MODULES).
CLI_BOOT = "import sys, zebra_cli.triage; from zebra_cli import main; main(sys.argv[1:])"


def cli_argv(*args: str) -> list[str]:
    """A subprocess command line running ``zebra <args>``."""
    return [sys.executable, "-c", CLI_BOOT, *args]


def write_png(path: Path, seed: int, size: int = 64) -> Path:
    """A small greyscale PNG with a bright blob whose place and brightness depend on ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(16, size - 16, 2)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))
    arr = 40 + 30 * rng.random((size, size)) + 150 * blob * rng.uniform(0.5, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return path


def write_csv_worklist(root: Path, n: int, *, with_priors: bool = True) -> Path:
    """``n`` PNG studies (every third with a prior) and ``worklist.csv`` naming them by relative path."""
    lines = ["Accession Number,Study,Prior,Clinical History"]
    for i in range(n):
        write_png(root / "studies" / f"s{i:03d}.png", seed=i)
        prior = ""
        if with_priors and i % 3 == 0:
            write_png(root / "priors" / f"s{i:03d}.png", seed=1000 + i)
            prior = f"priors/s{i:03d}.png"
        lines.append(f"ACC{i:04d},studies/s{i:03d}.png,{prior},history of case {i}")
    path = root / "worklist.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def csv_worklist(tmp_path: Path) -> Path:
    """A 12-study CSV worklist."""
    return write_csv_worklist(tmp_path / "wl", 12)


@pytest.fixture(scope="session")
def nova_worklist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic NOVA data set of 8 cases (half of them longitudinal pairs)."""
    from zebra_datasets import generate_synthetic

    root = tmp_path_factory.mktemp("nova") / "syn"
    generate_synthetic(root, n_cases=8, seed=3, size=96)
    return root


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session (copied by :func:`store`: migrations take a second each)."""
    from store import Store

    path = tmp_path_factory.mktemp("db") / "template.db"
    template = Store(f"sqlite:///{path}")
    template.upgrade()
    template.dispose()
    return path


@pytest.fixture
def store(zebra_env: Path, migrated_db: Path) -> Iterator:
    """A migrated SQLite store in the test's data directory."""
    import shutil

    from store import Store

    target = zebra_env / "triage.db"
    shutil.copyfile(migrated_db, target)
    s = Store(f"sqlite:///{target}")
    yield s
    s.dispose()


def run_snapshot(store_url: str, run_name: str | None = None) -> dict[str, tuple[Any, ...]]:
    """``item_key -> (status, priority, result, error)`` of a run (the newest, or the one named), checking
    that the run has no duplicate rows."""
    from store import Store, TriageItem, TriageRun

    store = Store(store_url)
    try:
        with store.session() as s:
            query = select(TriageRun.id).order_by(TriageRun.id.desc()).limit(1)
            if run_name is not None:
                query = select(TriageRun.id).where(TriageRun.name == run_name)
            run_id = s.scalar(query)
            rows = s.execute(
                select(
                    TriageItem.item_key,
                    TriageItem.status,
                    TriageItem.priority,
                    TriageItem.result,
                    TriageItem.error,
                ).where(TriageItem.run_id == run_id)
            ).all()
            n = s.scalar(select(func.count()).select_from(TriageItem).where(TriageItem.run_id == run_id))
    finally:
        store.dispose()
    out = {r[0]: tuple(r[1:]) for r in rows}
    assert len(out) == n == len(rows), "duplicate item rows"
    return out


@pytest.fixture
def snapshot():  # -> Callable[[str, str | None], dict]
    """:func:`run_snapshot`, for tests (test modules cannot import each other in importlib mode)."""
    return run_snapshot


@pytest.fixture
def make_csv_worklist():  # -> Callable[..., Path]
    """:func:`write_csv_worklist`."""
    return write_csv_worklist


@pytest.fixture
def cli():  # -> Callable[..., list[str]]
    """:func:`cli_argv`."""
    return cli_argv
