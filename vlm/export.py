"""The open_clip export of the VLM's vision encoder (the retrieval image embedder) and its verification.

``zebra-med-encoder.safetensors`` is a plain open_clip CLIP state dict of architecture ``zebra-med-rn16``
(``index_builder/model_configs/zebra-med-rn16.json``): ``visual.*`` = the VLM's encoder, the rest = the CLIP
text tower of the contrastive stages (float16). Loading it::

    import open_clip
    open_clip.add_model_config("index_builder/model_configs")
    model, _, _ = open_clip.create_model_and_transforms(
        "zebra-med-rn16", pretrained="index_builder/weights/zebra-med-encoder.safetensors"
    )
    model.eval()  # open_clip returns a model in train mode: batch-norm would use batch statistics

:func:`export_open_clip` always exports from the weights of a saved checkpoint (never from a live, possibly
batch-norm-fused or still-training model) and then re-loads the file through open_clip and checks that
``encode_image(normalize=True)`` equals the VLM's :meth:`~vlm.model.network.ZebraVLM.embed`, so the two
cannot drift apart silently.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vlm.checkpoint import load_checkpoint, load_state, read_meta, save_state
from vlm.model.config import VLMConfig, register_arch
from zebra.errors import ModelError

log = logging.getLogger(__name__)

#: Largest tolerated difference between open_clip's and the VLM's normalised embeddings.
EXPORT_ATOL = 1e-4


def visual_digest(state: dict[str, torch.Tensor], prefix: str = "visual.") -> str:
    """SHA-256 over the ``prefix``-ed tensors of a state dict (names, dtypes as float32 and bytes).

    The VLM checkpoint and its open_clip export hold the same encoder exactly when their digests agree.
    """
    digest = hashlib.sha256()
    for key in sorted(k for k in state if k.startswith(prefix)):
        value = state[key].detach().cpu()
        value = value.float() if value.is_floating_point() else value
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_open_clip_encoder(path: Path, config: VLMConfig) -> nn.Module:
    """The exported file as an open_clip CLIP model in eval mode (float32).

    Raises:
        NotFoundError: Missing file.
        ModelError: When the file does not fit ``config.arch``.
    """
    import open_clip

    arch = register_arch(config)
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=None)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state(path).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{path} is not an open_clip {arch} state dict: {str(exc)[:300]}.",
            hint="Re-export it with vlm.export.export_open_clip from the VLM checkpoint.",
        ) from exc
    return model.eval()


def probe_batch(size: int, seed: int = 0) -> torch.Tensor:
    """Normalised probe inputs ``(3, 3, size, size)``: zeros, seeded noise and a letterboxed synthetic slice."""
    from vlm.bench import synthetic_slice
    from vlm.preprocess import normalize_batch, prepare

    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(size, size, generator=gen)
    slice_ = torch.from_numpy(prepare(synthetic_slice(max(size, 64), seed=seed)[:, 8:], size).square)
    squares = torch.stack([torch.zeros(size, size), noise, slice_])
    return normalize_batch(squares)


@torch.inference_mode()
def verify_open_clip_export(checkpoint: Path, encoder: Path, *, atol: float = EXPORT_ATOL) -> float:
    """Checks that ``encoder`` (open_clip) embeds like the VLM ``checkpoint``; returns the largest difference.

    Both the weights (:func:`visual_digest`) and the outputs on :func:`probe_batch` are compared; the
    reference is the un-fused network, and the open_clip model is put in eval mode.

    Raises:
        ModelError: When the export holds other encoder weights or embeds differently.
    """
    model, _ = load_checkpoint(checkpoint)
    exported = load_open_clip_encoder(encoder, model.config)
    if visual_digest(model.state_dict()) != visual_digest(exported.state_dict()):
        raise ModelError(
            f"{encoder} holds other encoder weights than {checkpoint}.",
            hint="Re-export it: vlm.export.export_open_clip(checkpoint, text_state, encoder).",
        )
    x = probe_batch(model.config.image_size)
    diff = float((exported.encode_image(x, normalize=True) - model.embed(x)).abs().max())
    if not np.isfinite(diff) or diff > atol:
        raise ModelError(
            f"{encoder} embeds differently from {checkpoint} (max difference {diff:.2e} > {atol:.0e}).",
            hint="Check that open_clip builds the same architecture (model config) and re-export.",
        )
    return diff


def export_open_clip(
    checkpoint: Path, text_state: dict[str, torch.Tensor], path: Path, *, text_fp16: bool = True
) -> Path:
    """Writes the open_clip state dict of ``checkpoint``'s encoder plus ``text_state`` and verifies it.

    Args:
        checkpoint: A saved VLM checkpoint (``.safetensors`` with its JSON).
        text_state: CLIP text tower, projections and logit scale (keys without ``visual.``); a previous
            export works too (its ``visual.*`` entries are ignored).
        path: The ``.safetensors`` to write.
        text_fp16: Store the text tower in float16 (most of the size; loading casts it back).

    Raises:
        ModelError: When the written file does not reproduce the checkpoint's embeddings.
    """
    vlm_state = load_state(checkpoint)
    state = {k: v for k, v in vlm_state.items() if k.startswith("visual.")}
    for key, value in text_state.items():
        if key.startswith("visual."):
            continue
        state[key] = value.half() if text_fp16 and value.is_floating_point() else value
    save_state(
        state,
        path,
        metadata={
            "format": "open_clip",
            "arch": str(read_meta(checkpoint)["config"]["arch"]),
            "source_checkpoint": Path(checkpoint).name,
            "visual_sha256": visual_digest(vlm_state),
        },
    )
    diff = verify_open_clip_export(checkpoint, path)
    log.info("exported %s from %s (max embedding difference %.1e)", path, checkpoint, diff)
    return path
