"""Bundles with an image index (builtin image embedder, seeded random init)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index_builder.build import add_to_bundle, build_bundle, delete_from_bundle
from index_builder.bundle import Bundle

from .conftest import HASH


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def test_image_bundle_round_trip(tmp_path: Path, image_dir: Path, corpus: Path, zebra_env: Path) -> None:
    out = tmp_path / "b"
    m = build_bundle(out, [f"jsonl:{corpus}", f"images:{image_dir}"], text_embedder=HASH)
    assert m["counts"]["images"] == 3 and m["counts"]["images_skipped"] == 1
    from index_builder.embedders.image import builtin_checkpoint

    assert m["image_embedder"]["seeded_random"] is (builtin_checkpoint() is None)
    assert m["image_embedder"]["dim"] == 256
    assert m["image_index"]["factory"] == "Flat" and m["image_index"]["ntotal"] == 3
    bundle = Bundle.open(out)
    assert bundle.images is not None and bundle.images.index.name == "vector_id"
    assert sorted(bundle.images["image_id"]) == ["images:img0.png", "images:img1.png", "images:img2.png"]
    assert all(Path(p).is_file() for p in bundle.images["path"])
    emb = bundle.image_embedder()
    from PIL import Image

    query = emb.encode_images([Image.open(image_dir / "img1.png")])
    hit = bundle.search_vectors(query, 1, image=True)[0][0]
    assert bundle.images.loc[hit[0], "image_id"] == "images:img1.png" and hit[1] > 0.99
    # Adding text only re-uses the image files; deleting an image drops it from the image index.
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "z", "text": "Another document."}\n')
    add_to_bundle(out, [f"jsonl:{more}?name=more"])
    assert (out / "image.faiss").stat().st_nlink >= 1 and Bundle.open(out).image_index.ntotal == 3
    m2 = delete_from_bundle(out, ["images:img0.png"])
    assert m2["counts"]["images"] == 2 and Bundle.open(out).image_index.ntotal == 2
