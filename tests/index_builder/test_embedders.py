"""Embedders: registries, the hashing test embedder, the open_clip image embedder, real MiniLM (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index_builder.embedders import (
    IMAGE_EMBEDDERS,
    TEXT_EMBEDDERS,
    create_image_embedder,
    create_text_embedder,
)
from zebra.errors import BackendNotFoundError, ConfigError, ModelError, NotFoundError


def test_registries_list_backends() -> None:
    assert {"builtin", "st", "hf", "hash"} <= set(TEXT_EMBEDDERS.available())
    assert {"builtin", "openclip"} <= set(IMAGE_EMBEDDERS.available())
    with pytest.raises(
        BackendNotFoundError, match=r"Did you mean 'builtin'.*Available: builtin, hash, hf, st"
    ):
        create_text_embedder("biultin")
    with pytest.raises(BackendNotFoundError, match="openclip"):
        create_image_embedder("open-clip:x@y")
    with pytest.raises(ConfigError, match="ARCH@PATH"):
        create_image_embedder("openclip:ViT-B-16")
    with pytest.raises(NotFoundError, match="does not exist"):
        create_text_embedder("st:/no/such/model")


def test_hash_embedder_is_deterministic_and_normalised() -> None:
    emb = create_text_embedder("hash:64")
    a = emb.encode(["dural tail sign", "ring enhancement", "", "dural tail sign"])
    assert a.shape == (4, 64) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a[0], a[3])
    assert np.array_equal(
        a,
        create_text_embedder("hash:64").encode(
            ["dural tail sign", "ring enhancement", "", "dural tail sign"]
        ),
    )
    assert emb.count_tokens("Hello, world!") == 4
    with pytest.raises(ConfigError):
        create_text_embedder("hash:many")


@pytest.fixture(scope="module")
def clip():
    """An open_clip embedder with no checkpoint (Zebra's small ViT config, seeded random initialisation)."""
    from index_builder.embedders.image import OpenClipEmbedder

    return OpenClipEmbedder("zebra-vit-s16", None, spec="openclip-seeded")


def test_seeded_random_image_embedder(clip) -> None:
    from PIL import Image

    from index_builder.embedders.image import OpenClipEmbedder

    info = clip.describe()
    assert (
        info["seeded_random"] is True
        and info["checkpoint_sha256"] is None
        and info["arch"] == "zebra-vit-s16"
    )
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (40, 60), dtype=np.uint8)),
        rng.integers(0, 4000, (32, 32)).astype(np.uint16),  # 16-bit grey is windowed
        np.zeros((20, 20, 3), dtype=np.uint8),
    ]
    vecs = clip.encode_images(images)
    assert vecs.shape == (3, clip.dim) and clip.dim == 256
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    texts = clip.encode_texts(["axial CT of the head", "chest radiograph"])
    assert texts.shape == (2, 256) and not np.allclose(texts[0], texts[1])
    # Same seed, same weights: another process would produce the same vectors.
    again = OpenClipEmbedder("zebra-vit-s16", None, spec="openclip-seeded")
    assert np.allclose(again.encode_images(images[:1]), vecs[:1], atol=1e-5)


def test_openclip_spec_loads_local_checkpoint(clip, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.clone().contiguous() for k, v in clip._model.state_dict().items()}
    state["logit_scale"] = torch.tensor(3.0)
    ckpt = tmp_path / "model.safetensors"
    save_file(state, str(ckpt))
    emb = create_image_embedder(f"openclip:zebra-vit-s16@{ckpt}")
    info = emb.describe()
    assert info["seeded_random"] is False and len(info["checkpoint_sha256"]) == 64
    assert float(emb._model.logit_scale.detach()) == pytest.approx(3.0)
    pic = np.full((24, 24), 200, dtype=np.uint8)
    assert np.allclose(emb.encode_images([pic]), clip.encode_images([pic]), atol=1e-5)
    # torch files load with weights_only=True.
    pt = tmp_path / "model.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pt)
    assert create_image_embedder(f"openclip:zebra-vit-s16@{pt}").describe()["checkpoint_sha256"]
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("visual.")}, str(partial))
    with pytest.raises(ModelError, match="does not fit"):
        create_image_embedder(f"openclip:zebra-vit-s16@{partial}")
    with pytest.raises(NotFoundError, match="Unknown open_clip architecture"):
        create_image_embedder(f"openclip:zebra-vit-s61@{ckpt}")


def test_builtin_is_the_committed_medical_encoder(zebra_env: Path) -> None:
    from index_builder.embedders.image import (
        BUILTIN_ARCH,
        BUILTIN_WEIGHTS,
        PACKAGE_WEIGHTS_DIR,
        builtin_checkpoint,
    )

    assert builtin_checkpoint() == PACKAGE_WEIGHTS_DIR / BUILTIN_WEIGHTS
    emb = create_image_embedder("builtin")
    info = emb.describe()
    assert info["arch"] == BUILTIN_ARCH == "zebra-med-rn16" and info["seeded_random"] is False
    assert info["dim"] == 256 and len(info["checkpoint_sha256"]) == 64
    # A trained encoder tells a head slice from its left-right mirror less than from noise.
    yy, xx = np.mgrid[:256, :256]
    head = ((((yy - 128) / 100) ** 2 + ((xx - 128) / 80) ** 2) < 1).astype(np.uint8) * 180
    head[100:140, 90:120] = 250
    noise = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)
    vecs = emb.encode_images([head, head[:, ::-1].copy(), noise])
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]


def test_builtin_checkpoint_from_data_dir(zebra_env: Path) -> None:
    from index_builder.embedders.image import BUILTIN_WEIGHTS, builtin_checkpoint

    (zebra_env / "models").mkdir()
    path = zebra_env / "models" / BUILTIN_WEIGHTS
    path.write_bytes(b"local weights come first")
    assert builtin_checkpoint() == path


@pytest.mark.slow
def test_minilm_builtin(minilm) -> None:
    assert minilm.dim == 384 and minilm.max_tokens == 256 and minilm.name == "all-MiniLM-L6-v2"
    vecs = minilm.encode(
        [
            "ring-enhancing brain lesion with central necrosis",
            "necrotic rim-enhancing cerebral mass",
            "fractured femur",
        ],
        batch_size=2,
    )
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert minilm.count_tokens("glioblastoma") > 1  # word pieces
    assert create_text_embedder("builtin", backend="torch") is minilm  # cached per process


@pytest.mark.slow
def test_minilm_bundle_search(
    minilm,
    tmp_path: Path,
    corpus: Path,
    long_corpus: Path,
    zebra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from zebra.config import get_settings

    monkeypatch.setenv("ZEBRA_MODELS__TEXT_BACKEND", "torch")
    get_settings.cache_clear()

    out = tmp_path / "real"
    m = build_bundle(out, [f"jsonl:{corpus}", f"jsonl:{long_corpus}?name=long"], text_embedder="builtin")
    assert m["text_embedder"] == {
        "spec": "builtin",
        "name": "all-MiniLM-L6-v2",
        "dim": 384,
        "max_tokens": 256,
        "normalize": True,
        "backend": "torch",
    }
    bundle = Bundle.open(out)
    assert bundle.text_embedder() is minilm
    hit = bundle.search_text("extra-axial mass with a dural tail", 1)[0][0]
    assert bundle.chunks.loc[hit, "doc_id"] == "jsonl:men"
    assert max(minilm.count_tokens(t) for t in bundle.chunks["text"]) <= 200
    assert (bundle.chunks["source"] == "long").sum() > 6  # long documents were split
