from __future__ import annotations

import pytest

from zebra.errors import BackendNotFoundError, NotFoundError


def test_registry_caches_per_spec_and_reports_unknown(tiny_checkpoint) -> None:
    from vlm.registry import VLMS, clear_cache, create_vlm

    clear_cache()
    spec = f"builtin:{tiny_checkpoint}"
    first = create_vlm(spec)
    assert create_vlm(spec) is first
    assert "builtin" in VLMS.available()
    with pytest.raises(BackendNotFoundError, match="Did you mean 'builtin'"):
        create_vlm("builtn")
    with pytest.raises(NotFoundError, match="does not exist"):
        create_vlm(f"builtin:{tiny_checkpoint.parent / 'missing.safetensors'}")
    clear_cache()


def test_embed_images_is_normalised(tiny_checkpoint, brain_slice) -> None:
    import numpy as np

    from vlm.backends.builtin import BuiltinVLM

    backend = BuiltinVLM(tiny_checkpoint)
    emb = backend.embed_images([brain_slice, brain_slice[::-1]])
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert backend.embed_images([]).shape == (0, 32)
