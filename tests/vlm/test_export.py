"""The open_clip export of the encoder reproduces the VLM's embedding, and drift is caught."""

from __future__ import annotations

import copy

import pytest
import torch

from vlm.checkpoint import load_state, save_checkpoint, save_state
from vlm.export import export_open_clip, load_open_clip_encoder, verify_open_clip_export
from zebra.errors import ModelError


@pytest.fixture(scope="module")
def trained_like(tiny_model, tiny_config, tmp_path_factory):
    """The tiny model with non-trivial batch-norm statistics (as after training), saved, plus a text tower."""
    from vlm.model.network import create_clip

    model = copy.deepcopy(tiny_model)
    gen = torch.Generator().manual_seed(1)
    for module in model.visual.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.3 * torch.randn(module.running_mean.shape, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
    folder = tmp_path_factory.mktemp("export")
    ckpt = folder / "tiny.safetensors"
    save_checkpoint(model, ckpt, {"name": "tiny"})
    torch.manual_seed(0)
    text = {k: v for k, v in create_clip(tiny_config).state_dict().items() if not k.startswith("visual.")}
    return ckpt, text


def test_export_embeds_like_the_vlm(trained_like, tiny_config, tmp_path) -> None:
    from vlm.backends.builtin import BuiltinVLM
    from vlm.bench import synthetic_slice
    from vlm.preprocess import to_model_input

    ckpt, text = trained_like
    encoder = export_open_clip(ckpt, text, tmp_path / "enc.safetensors")
    assert verify_open_clip_export(ckpt, encoder) < 1e-4
    clip = load_open_clip_encoder(encoder, tiny_config)
    assert not clip.training
    image = synthetic_slice(96, seed=2)[:, 10:]  # non-square: letterboxed by both paths
    with torch.no_grad():
        via_open_clip = clip.encode_image(to_model_input(image, 64)[None], normalize=True)[0].numpy()
    analysed = BuiltinVLM(ckpt).analyze_image(image)  # the fused inference copy
    assert analysed.gate.accepted, analysed.gate
    assert abs(float(via_open_clip @ analysed.embedding) - 1) < 1e-4
    embedded = BuiltinVLM(ckpt).embed_images([image])[0]
    assert abs(float(via_open_clip @ embedded) - 1) < 1e-4
    # The text tower is stored in float16 but loads as float32.
    assert load_state(encoder)["ln_final.weight"].dtype == torch.float16
    assert clip.ln_final.weight.dtype == torch.float32


def test_a_drifted_export_is_refused(trained_like, tmp_path) -> None:
    ckpt, text = trained_like
    encoder = export_open_clip(ckpt, text, tmp_path / "enc.safetensors")
    state = load_state(encoder)
    key = next(k for k in state if k.startswith("visual.") and k.endswith("running_mean"))
    state[key] = state[key] + 0.5
    save_state(state, encoder)
    with pytest.raises(ModelError, match="other encoder weights"):
        verify_open_clip_export(ckpt, encoder)
