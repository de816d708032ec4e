"""The floors of docs/architecture.md, kept by the import-linter contract in ``.importlinter``.

``make test`` runs ``lint-imports`` itself; these tests show that the contract covers every top-level package
and that it fails on an upward import (a lazy one, inside a function), and they keep file-level import cycles
out (the store's SQLAlchemy models may name each other under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"
#: Folders of the checkout that are not importable packages of the product.
NOT_PRODUCT = {"tests", "scripts", "docs", "artifacts", "build", "dist"}
#: The one circle allowed: SQLAlchemy relationships between models (type-checking imports only).
ALLOWED_CYCLE_PREFIXES = ("store.models.",)


def _lint_imports() -> Path:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return exe


def _contract() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser


def _packages() -> list[str]:
    return [line.strip() for line in _contract()["importlinter"]["root_packages"].split() if line.strip()]


def _layer_modules() -> set[str]:
    layers = _contract()["importlinter:contract:floors"]["layers"]
    return {name.strip() for line in layers.splitlines() for name in line.split("|") if name.strip()}


def test_every_top_level_package_is_on_a_floor() -> None:
    on_disk = {
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in NOT_PRODUCT and not p.parent.name.startswith(".")
    }
    assert on_disk == set(_packages()) == _layer_modules()


def test_the_contract_holds_on_this_checkout() -> None:
    done = subprocess.run(
        [str(_lint_imports()), "--config", str(CONFIG), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the product's packages in which the VLM gate imports the web app lazily."""
    for name in _packages():
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    gate = tmp_path / "vlm" / "gate.py"
    gate.write_text(
        gate.read_text() + "\n\ndef _leak() -> None:\n    from zebra_web import app  # noqa: F401\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [str(_lint_imports()), "--config", str(tmp_path / ".importlinter"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "0 kept, 1 broken" in done.stdout
    assert "vlm is not allowed to import zebra_web" in done.stdout
    assert "vlm.gate -> zebra_web.app" in done.stdout


def test_no_file_level_import_cycle() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(*_packages(), include_external_packages=False, cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = [c for c in _strongly_connected(edges) if len(c) > 1]
    bad = [c for c in cycles if not all(m.startswith(ALLOWED_CYCLE_PREFIXES) for m in c)]
    assert bad == [], f"modules that import each other: {bad}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (grimp gives the edges, not the components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    out.append(sorted(component))
    return out


def test_strongly_connected_finds_a_hand_drawn_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(_strongly_connected(edges)) == [["a", "b", "c"], ["d"], ["e"]]
