"""Configuration of the built-in VLM network (stored in every checkpoint's JSON)."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlm.model.vocab import ATTRIBUTE_VOCAB

log = logging.getLogger(__name__)

#: Zebra's open_clip model configs (new ones owned by the VLM: ``zebra-med-rn16.json``).
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "index_builder" / "model_configs"
DEFAULT_ARCH = "zebra-med-rn16"
#: open_clip's default normalisation (kept so the exported encoder works with open_clip's own transform).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VLMConfig:
    """Hyper-parameters of :class:`vlm.model.network.ZebraVLM`.

    Attributes:
        arch: open_clip architecture name of the vision-language encoder (a ModifiedResNet config).
        clip_cfg: The open_clip model config itself; when set it is registered under ``arch`` (tests use
            tiny configs this way). ``None`` means ``arch`` is one of the shipped configs.
        image_size: Square input side in pixels (images are letterboxed to it).
        dim: Width of the feature neck and of the ``<Ano>`` / ``<Diff>`` tokens.
        n_ano_tokens: Number of learnable ``<Ano>`` query tokens.
        n_diff_tokens: Number of learnable ``<Diff>`` query tokens.
        heads: Attention heads of the token cross-attention.
        attributes: Attribute head name -> class names.
        max_objects: Most boxes per image in training targets.
        change_cue: Size-change cue the change head reads besides the ``<Diff>`` tokens (see
            :data:`CHANGE_CUES`): ``"excess"`` (log-ratios of the heat mass above 4 thresholds, current vs
            prior) or ``"mass"`` (log-ratio of the summed heatmap; zebra-vlm-v1 and older checkpoints).
    """

    arch: str = DEFAULT_ARCH
    clip_cfg: dict[str, Any] | None = None
    image_size: int = 256
    dim: int = 64
    n_ano_tokens: int = 8
    n_diff_tokens: int = 4
    heads: int = 4
    attributes: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in ATTRIBUTE_VOCAB.items()}
    )
    max_objects: int = 12
    change_cue: str = "excess"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (newer checkpoints)."""
        known = {f for f in cls.__dataclass_fields__}
        # Checkpoints written before the cue was configurable were trained with the summed-mass cue.
        return cls(**{"change_cue": "mass", **{k: v for k, v in data.items() if k in known}})


#: Change cues -> the heat thresholds of their log mass ratios (``None``: the whole heatmap's mass).
#: The whole map's mass is dominated by the ~1000 background cells, so it barely moves when a lesion
#: grows or shrinks; the mass *above* a threshold follows the lesion.
CHANGE_CUES: dict[str, tuple[float, ...] | None] = {"mass": None, "excess": (0.1, 0.2, 0.3, 0.5)}


_registered: set[str] = set()


def register_arch(config: VLMConfig) -> str:
    """Makes ``config.arch`` known to open_clip (shipped configs, or ``config.clip_cfg``); returns its name."""
    import open_clip

    if "__shipped__" not in _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered.add("__shipped__")
    if config.clip_cfg is not None:
        key = config.arch + json.dumps(config.clip_cfg, sort_keys=True)
        if key not in _registered:
            # open_clip only registers configs from files, so a custom one goes through a temp file.
            folder = Path(tempfile.mkdtemp(prefix="zebra-openclip-"))
            path = folder / f"{config.arch}.json"
            path.write_text(json.dumps(config.clip_cfg))
            open_clip.add_model_config(path)
            _registered.add(key)
    return config.arch


def clip_model_config(config: VLMConfig) -> dict[str, Any]:
    """The open_clip model config dict in force for ``config``."""
    if config.clip_cfg is not None:
        return config.clip_cfg
    return json.loads((MODEL_CONFIG_DIR / f"{config.arch}.json").read_text())
