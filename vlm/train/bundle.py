"""What a training stage works on: the VLM network plus the CLIP text tower sharing its vision encoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vlm.checkpoint import load_state, read_meta, save_checkpoint, save_state
from vlm.model.config import VLMConfig
from vlm.model.network import ZebraVLM, create_clip
from vlm.train.errors import TrainingConfigError

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
TEXT_FILE = "text.safetensors"


@dataclass
class Bundle:
    """The VLM and the open_clip CLIP model whose ``visual`` is the VLM's encoder."""

    vlm: ZebraVLM
    clip: nn.Module

    @classmethod
    def fresh(cls, config: VLMConfig, seed: int) -> Bundle:
        """A seeded random initialisation."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            clip = create_clip(config)
            vlm = ZebraVLM(config, visual=clip.visual)
        return cls(vlm=vlm, clip=clip)

    def text_state(self) -> dict[str, torch.Tensor]:
        """The CLIP model's state without the vision tower (text tower, projections, logit scale)."""
        return {k: v for k, v in self.clip.state_dict().items() if not k.startswith("visual.")}

    def save(self, folder: Path, meta: dict) -> None:
        """Writes ``model.safetensors`` (+ JSON) and ``text.safetensors`` into ``folder``."""
        save_checkpoint(self.vlm, folder / MODEL_FILE, meta)
        save_state(self.text_state(), folder / TEXT_FILE)

    @classmethod
    def load(cls, source: Path, seed: int = 0) -> Bundle:
        """Loads a stage folder (``model.safetensors`` + ``text.safetensors``) or a VLM checkpoint file.

        A checkpoint file without a ``text.safetensors`` beside it keeps a random text tower (logged).

        Raises:
            TrainingConfigError: When ``source`` holds no checkpoint.
        """
        source = Path(source).expanduser()
        model_path = source / MODEL_FILE if source.is_dir() else source
        if not model_path.is_file():
            raise TrainingConfigError(
                f"No checkpoint at {source}.", hint="Pass a stage output folder or a .safetensors checkpoint."
            )
        config = VLMConfig.from_dict(read_meta(model_path)["config"])
        bundle = cls.fresh(config, seed)
        bundle.vlm.load_state_dict(load_state(model_path), strict=True)
        text_path = model_path.parent / TEXT_FILE
        if text_path.is_file():
            missing, unexpected = bundle.clip.load_state_dict(
                {
                    **load_state(text_path),
                    **{f"visual.{k}": v for k, v in bundle.vlm.visual.state_dict().items()},
                },
                strict=False,
            )
            if missing or unexpected:
                raise TrainingConfigError(
                    f"{text_path} does not fit {config.arch}: missing {missing[:3]}, unexpected {unexpected[:3]}.",
                    hint="Use the text.safetensors written with this checkpoint.",
                )
        else:
            log.warning("%s has no %s beside it: the CLIP text tower starts random", model_path, TEXT_FILE)
        return bundle
