"""``zebra setup`` (the first half of ``make run``): database, default knowledge base, rebuild rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A tiny corpus and two images instead of HPO + MedPix, embedded with the hashing text embedder; returns
    the list of bundle builds that setup starts."""
    from PIL import Image

    import index_builder.build
    import zebra.bootstrap

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": i, "title": t, "diagnosis": t, "text": f"{t} is a rare finding."}) + "\n"
            for i, t in enumerate(["Glioblastoma", "Meningioma", "Brain abscess"])
        )
    )
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(images / f"{i}.png")
    sources = [f"jsonl:{corpus}", f"images:{images}"]
    calls: list[Path] = []
    real = index_builder.build.build_bundle

    def build(out, srcs, **kw):
        calls.append(Path(out))
        return real(out, srcs, text_embedder="hash:64", **kw)

    monkeypatch.setattr(zebra.bootstrap, "default_sources", lambda settings: sources)
    monkeypatch.setattr(index_builder.build, "build_bundle", build)
    return calls


def test_setup_builds_keeps_and_rebuilds(zebra_env: Path, builds: list[Path]) -> None:
    import zebra.bootstrap as bootstrap
    from zebra.config import get_settings

    settings = get_settings()
    first = bootstrap.setup(settings, show_progress=False)
    assert first.bundle_action == "built" and first.bundle_counts["images"] == 2
    assert first.database_revision  # migrated
    assert (settings.bundle_dir / "manifest.json").is_file()
    assert bootstrap.setup(settings, show_progress=False).bundle_action == "kept"

    # A damaged file is refused on load, and setup rebuilds instead of serving it.
    victim = settings.bundle_dir / "text.faiss"
    victim.write_bytes(victim.read_bytes()[:-8])
    assert bootstrap.setup(settings, show_progress=False).bundle_action == "built"
    assert builds == [settings.bundle_dir, settings.bundle_dir]


def test_stale_image_encoder_triggers_a_rebuild(zebra_env: Path, builds: list[Path]) -> None:
    import zebra.bootstrap as bootstrap
    from zebra.config import get_settings

    settings = get_settings()
    bootstrap.setup(settings, show_progress=False)
    manifest = json.loads((settings.bundle_dir / "manifest.json").read_text())
    assert bootstrap.stale_reason(manifest) is None
    old = {**manifest["image_embedder"], "arch": "zebra-vit-s16", "checkpoint_sha256": None}
    reason = bootstrap.stale_reason({**manifest, "image_embedder": old})
    assert reason is not None and "zebra-vit-s16" in reason and "zebra-med-rn16" in reason
    # Bundles built with an explicitly chosen encoder are the user's business.
    assert bootstrap.stale_reason({"image_embedder": {"spec": "openclip:x@/y", "arch": "x"}}) is None
