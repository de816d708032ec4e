"""Atomic publication: a build killed midway leaves the previous bundle loadable; locks; recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from index_builder import atomic
from index_builder.atomic import bundle_lock, recover
from index_builder.build import build_bundle
from index_builder.bundle import Bundle
from index_builder.errors import BuildLockedError

from .conftest import HASH

_SLOW_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from index_builder.embedders.base import TEXT_EMBEDDERS
    from index_builder.embedders.text import HashingEmbedder
    from index_builder.build import build_bundle

    import index_builder.atomic

    out, corpus, marker, stage = sys.argv[1:5]

    class Slow(HashingEmbedder):
        def encode(self, texts, **kw):
            if stage == "embedding":
                Path(marker).write_text(stage)
                time.sleep(120)
            return super().encode(texts, **kw)

    real_entries = index_builder.atomic.layout.file_entries

    def slow_entries(root):
        # Every data file is written, the manifest is not: the worst moment to die.
        Path(marker).write_text(stage)
        time.sleep(120)
        return real_entries(root)

    if stage == "publishing":
        index_builder.atomic.layout.file_entries = slow_entries
    TEXT_EMBEDDERS.register("slowhash")(lambda arg, **kw: Slow(256))
    build_bundle(out, [f"jsonl:{corpus}"], text_embedder="slowhash")
    """
)


def _snapshot(bundle: Bundle) -> tuple:
    return (bundle.manifest, bundle.chunks.to_dict(), bundle.documents.to_dict())


@pytest.mark.parametrize("stage", ["embedding", "publishing"])
def test_killed_build_leaves_previous_bundle(
    built: Path, long_corpus: Path, tmp_path: Path, stage: str
) -> None:
    before = _snapshot(Bundle.open(built))
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_BUILD, str(built), str(long_corpus), str(marker), stage],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"build exited early: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the build never reached the embedding stage"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    if stage == "publishing":
        leftovers = list(built.parent.glob("bundle.tmp-*"))
        assert leftovers and (leftovers[0] / "text.faiss").is_file()
        assert not (leftovers[0] / "manifest.json").exists()
    after = Bundle.open(built)  # full SHA-256 verification
    assert _snapshot(after) == before
    # The next build cleans up the leftovers and publishes normally.
    build_bundle(built, [f"jsonl:{long_corpus}"], text_embedder=HASH)
    assert not list(built.parent.glob("bundle.tmp-*"))
    assert Bundle.open(built).counts["documents"] == 6


def test_failed_build_keeps_previous_bundle(built: Path, tmp_path: Path) -> None:
    before = _snapshot(Bundle.open(built))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\n{broken\n', encoding="utf-8")
    from index_builder.errors import SourceError

    with pytest.raises(SourceError, match=r"bad\.jsonl:2"):
        build_bundle(built, [f"jsonl:{bad}"], text_embedder=HASH)
    assert _snapshot(Bundle.open(built)) == before
    assert not list(built.parent.glob("bundle.tmp-*"))


def test_two_rename_fallback(built: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    build_bundle(built, [f"jsonl:{corpus}?name=again"], text_embedder=HASH)
    assert set(Bundle.open(built).documents["source"]) == {"again"}
    assert not list(built.parent.glob("bundle.old-*"))


def test_recover_restores_interrupted_swap(built: Path) -> None:
    old = built.parent / "bundle.old-20240101000000-abcd"
    os.rename(built, old)  # as if killed between the two renames of the fallback swap
    from index_builder.errors import BundleNotFoundError

    with pytest.raises(BundleNotFoundError, match="interrupted swap"):
        Bundle.open(built)
    with bundle_lock(built):
        recover(built)
    assert Bundle.open(built).counts["documents"] == 4 and not old.exists()


def test_concurrent_build_is_refused(built: Path, corpus: Path) -> None:
    with bundle_lock(built), pytest.raises(BuildLockedError, match="Another process"):
        build_bundle(built, [f"jsonl:{corpus}"], text_embedder=HASH)
