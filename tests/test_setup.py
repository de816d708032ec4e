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
    import index_builder.default_kb

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

    monkeypatch.setattr(index_builder.default_kb, "default_sources", lambda settings: sources)
    monkeypatch.setattr(index_builder.build, "build_bundle", build)
    return calls


def test_setup_builds_keeps_and_rebuilds(zebra_env: Path, builds: list[Path]) -> None:
    import index_builder.default_kb as bootstrap
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
    import index_builder.default_kb as bootstrap
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


def _make_stale(bundle_dir: Path) -> None:
    """Pretends the bundle's images were embedded by other built-in encoder weights."""
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["image_embedder"]["checkpoint_sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))


def test_stale_bundle_is_reembedded_not_rebuilt(zebra_env: Path, builds: list[Path]) -> None:
    import faiss

    import index_builder.default_kb as bootstrap
    from zebra.config import get_settings

    settings = get_settings()
    bootstrap.setup(settings, show_progress=False)
    out = settings.bundle_dir
    before = faiss.read_index(str(out / "image.faiss"))
    text_before = (out / "chunks.parquet").read_bytes()
    _make_stale(out)
    report = bootstrap.setup(settings, show_progress=False)
    assert report.bundle_action == "re-embedded images" and builds == [out]  # no second build
    manifest = json.loads((out / "manifest.json").read_text())
    assert bootstrap.stale_reason(manifest) is None and manifest["reembedded"]["images"] == 2
    after = faiss.read_index(str(out / "image.faiss"))
    ids = faiss.vector_to_array(after.id_map)
    assert sorted(ids) == sorted(faiss.vector_to_array(before.id_map))
    # the same weights give the same vectors under the same ids; the text side is untouched
    for i in ids:
        assert np.allclose(after.reconstruct(int(i)), before.reconstruct(int(i)), atol=1e-5)
    assert (out / "chunks.parquet").read_bytes() == text_before
    assert bootstrap.setup(settings, show_progress=False).bundle_action == "kept"


def test_reembedding_falls_back_to_a_rebuild_when_images_are_gone(
    zebra_env: Path, builds: list[Path]
) -> None:
    import index_builder.default_kb as bootstrap
    from index_builder.bundle import Bundle
    from zebra.config import get_settings

    settings = get_settings()
    bootstrap.setup(settings, show_progress=False)
    out = settings.bundle_dir
    first_image = Path(Bundle.open(out).images["path"].iloc[0])
    first_image.unlink()
    _make_stale(out)
    report = bootstrap.setup(settings, show_progress=False)
    assert report.bundle_action == "built" and report.bundle_counts["images"] == 1
    assert builds == [out, out]
