"""Architecture adapters for the ``hf:`` VLM backend: which Hugging Face model types are supported, how each
is loaded, how images are marked in a prompt and how its vision tokens map onto a 2-D patch grid.

Only local folders are read (``local_files_only=True``); nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zebra.errors import ModelError

log = logging.getLogger(__name__)


class HFModelNotFoundError(ModelError):
    """The ``hf:`` path does not exist or is not a Hugging Face model folder."""


class UnsupportedModelError(ModelError):
    """The folder holds a model type the ``hf:`` backend has no adapter for."""


@dataclass(frozen=True)
class Architecture:
    """How to drive one family of vision-language models.

    Attributes:
        model_type: ``config.json``'s ``model_type``.
        model_class: Name of the ``transformers`` class that loads it.
        family: ``"qwen"`` (dynamic resolution, merged patches) or ``"llava"`` (fixed square input).
    """

    model_type: str
    model_class: str
    family: str

    def image_placeholder(self, processor: Any) -> str:
        """The text that stands for one image when the processor has no chat template."""
        if self.family == "qwen":
            return "<|vision_start|><|image_pad|><|vision_end|>"
        return f"{getattr(processor, 'image_token', '<image>')}\n"

    def prepare_image(self, image: Any, processor: Any) -> Any:
        """Resizes a PIL image so that the vision tokens cover the whole image.

        LLaVA's CLIP processor resizes the short side and centre-crops; resizing to the crop size first makes
        the crop a no-op, so the patch grid maps onto the full image (at the cost of aspect distortion).
        Qwen-VL resizes dynamically and keeps the whole image, so it is left alone.
        """
        if self.family != "llava":
            return image
        crop = getattr(processor.image_processor, "crop_size", None) or {}
        if isinstance(crop, dict):
            h, w = crop.get("height"), crop.get("width")
        else:  # SizeDict in newer transformers
            h, w = getattr(crop, "height", None), getattr(crop, "width", None)
        if not h or not w:
            size = getattr(processor.image_processor, "size", None) or {}
            side = (
                size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
            )
            h = w = side
        return image.resize((int(w), int(h))) if h and w else image

    def vision_inputs(self, inputs: Any) -> dict[str, Any]:
        """The processor outputs the vision tower needs."""
        keys = ("pixel_values", "image_grid_thw") if self.family == "qwen" else ("pixel_values",)
        return {k: inputs[k] for k in keys if k in inputs}

    def grids(self, inputs: Any, config: Any) -> list[tuple[int, int]]:
        """The (rows, cols) grid of vision tokens of each image in ``inputs``, in prompt order."""
        if self.family == "qwen":
            merge = int(config.vision_config.spatial_merge_size)
            return [(int(h) // merge, int(w) // merge) for _, h, w in inputs["image_grid_thw"].tolist()]
        patch = int(config.vision_config.patch_size)
        pixel_values = inputs["pixel_values"]
        h, w = int(pixel_values.shape[-2]), int(pixel_values.shape[-1])
        return [(h // patch, w // patch)] * int(pixel_values.shape[0])

    def image_features(self, model: Any, inputs: Any) -> list[Any]:
        """Per-image vision features ``(tokens, hidden)`` as fed to the language model (after the merger or
        projector), one tensor per image, CLS tokens dropped."""
        out = model.get_image_features(**self.vision_inputs(inputs))
        feats = getattr(out, "pooler_output", out)  # transformers >= 5 returns an output object
        grids = self.grids(inputs, model.config)
        if hasattr(feats, "dim"):  # one tensor: (images, tokens, d) or all tokens concatenated
            feats = list(feats) if feats.dim() == 3 else list(feats.split([r * c for r, c in grids]))
        return [_drop_cls(f, r * c) for f, (r, c) in zip(feats, grids, strict=True)]


def _drop_cls(features: Any, expected: int) -> Any:
    if features.shape[0] == expected + 1:  # vision_feature_select_strategy="full" keeps CLS first
        return features[1:]
    if features.shape[0] != expected:
        raise ModelError(
            f"Vision tower returned {features.shape[0]} tokens for a {expected}-token patch grid.",
            hint="This model variant is not supported by the hf: backend; use Qwen2-VL, Qwen2.5-VL or LLaVA-1.5.",
        )
    return features


#: Supported ``model_type`` values.
ARCHITECTURES: dict[str, Architecture] = {
    "qwen2_vl": Architecture("qwen2_vl", "Qwen2VLForConditionalGeneration", "qwen"),
    "qwen2_5_vl": Architecture("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "qwen"),
    "llava": Architecture("llava", "LlavaForConditionalGeneration", "llava"),
}


def detect_architecture(path: Path) -> Architecture:
    """Reads ``config.json`` in ``path`` and returns its adapter.

    Raises:
        HFModelNotFoundError: When ``path`` is missing or has no ``config.json``.
        UnsupportedModelError: When the model type has no adapter; the message lists those that do.
    """
    if not path.exists():
        raise HFModelNotFoundError(
            f"Hugging Face model folder {path} does not exist.",
            hint="Pass a local folder saved with save_pretrained, e.g. --vlm hf:/models/Qwen2-VL-2B-Instruct.",
        )
    config_file = path / "config.json"
    if not path.is_dir() or not config_file.is_file():
        raise HFModelNotFoundError(
            f"{path} is not a Hugging Face model folder (no config.json).",
            hint="Point hf: at the folder that holds config.json, the weights and the processor files.",
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"Cannot read {config_file}: {exc}.", hint="Re-save the model folder.") from exc
    model_type = str(config.get("model_type", "")) if isinstance(config, dict) else ""
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise UnsupportedModelError(
            f"Model type {model_type or '(none)'!r} in {config_file} is not supported by the hf: VLM backend.",
            hint=f"Supported model types: {', '.join(sorted(ARCHITECTURES))}.",
        )
    return arch


def load_model_and_processor(path: Path, arch: Architecture, *, dtype: Any) -> tuple[Any, Any]:
    """Loads the model and its processor from a local folder, never from the network.

    Raises:
        ModelError: When ``transformers`` lacks the class or the folder is incomplete.
    """
    import transformers

    model_cls = getattr(transformers, arch.model_class, None)
    if model_cls is None:
        raise ModelError(
            f"transformers {transformers.__version__} has no {arch.model_class}.",
            hint="Upgrade transformers to a version that supports this model type.",
        )
    try:
        processor = transformers.AutoProcessor.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
        model = model_cls.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, dtype=dtype
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"Could not load the {arch.model_type} model or processor from {path}: {exc}",
            hint="The folder needs config.json, the weights (*.safetensors) and the processor/tokenizer files.",
        ) from exc
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise ModelError(
            f"{path} has no multimodal processor (found {type(processor).__name__}).",
            hint="Save the processor into the folder with processor.save_pretrained(path).",
        )
    model.eval()
    log.info("loaded %s from %s", arch.model_class, path)
    return model, processor
