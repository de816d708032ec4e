"""Image embedders: open_clip models from a local checkpoint, including Zebra's own medical encoder.

``builtin`` is ``zebra-med-rn16`` (``index_builder/model_configs/zebra-med-rn16.json``: a small open_clip
ModifiedResNet at 256 px with a 3-layer text tower; 256-d embeddings), the vision encoder of the built-in VLM
(``vlm``), trained CLIP-style on MedPix images and captions and then on the VLM's detection stages, exported
by ``zebra vlm build-default``. Its weights come from ``<data_dir>/models/zebra-med-encoder.safetensors``, else
``index_builder/weights/zebra-med-encoder.safetensors`` (committed); when neither exists the model is a seeded
random initialisation, flagged ``seeded_random`` in manifests.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index_builder.embedders.base import IMAGE_EMBEDDERS
from index_builder.layout import sha256_file
from zebra.errors import ConfigError, ModelError, NotFoundError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

BUILTIN_ARCH = "zebra-med-rn16"
#: File name of the built-in encoder's weights (written by the VLM build).
BUILTIN_WEIGHTS = "zebra-med-encoder.safetensors"
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
PACKAGE_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Seed of the random initialisation used when no trained checkpoint exists.
RANDOM_INIT_SEED = 20240607


@functools.lru_cache(maxsize=1)
def register_model_configs() -> list[str]:
    """Registers Zebra's open_clip model configs (idempotent); returns their names."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


def builtin_checkpoint() -> Path | None:
    """The trained ``zebra-med-rn16`` checkpoint in force, or ``None`` when there is none."""
    from zebra.config import get_settings

    for folder in (get_settings().models_dir, PACKAGE_WEIGHTS_DIR):
        path = folder / BUILTIN_WEIGHTS
        if path.is_file():
            return path
    return None


def load_state_dict(path: Path) -> dict[str, Any]:
    """Reads a checkpoint without unpickling: safetensors, or a torch file with ``weights_only=True``."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(
                f"Checkpoint {path} is not a plain tensor file: {exc}.",
                hint="Save it with safetensors, or torch.save(model.state_dict()) without custom objects.",
            ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"Checkpoint {path} holds no state dict.", hint="Save model.state_dict().")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


class OpenClipEmbedder:
    """An open_clip model on CPU (or the configured device) in eval mode.

    Args:
        arch: open_clip architecture name (Zebra's configs are registered first).
        checkpoint: Local checkpoint, or ``None`` for a seeded random initialisation.
        spec: The spec string recorded in manifests.
        device: Torch device.
    """

    def __init__(self, arch: str, checkpoint: Path | None, *, spec: str, device: str = "cpu") -> None:
        import open_clip
        import torch

        register_model_configs()
        if arch not in open_clip.list_models():
            import difflib

            close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
            raise NotFoundError(
                f"Unknown open_clip architecture {arch!r}."
                + (f" Did you mean {', '.join(close)}?" if close else ""),
                hint=f"Zebra's own: {', '.join(register_model_configs())}; see open_clip.list_models() for others.",
            )
        self.arch = arch
        self.spec = spec
        self.name = arch
        self.device = device
        self.checkpoint = checkpoint
        self.seeded_random = checkpoint is None
        self.checkpoint_sha256 = sha256_file(checkpoint) if checkpoint else None
        with torch.random.fork_rng(devices=[]):
            # A fixed seed makes the untrained model identical in every process, so bundles stay usable.
            torch.manual_seed(RANDOM_INIT_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device="cpu")
        if checkpoint is not None:
            state = load_state_dict(checkpoint)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelError(
                    f"Checkpoint {checkpoint} does not fit architecture {arch}: {str(exc)[:300]}.",
                    hint="Pass the architecture it was trained with: openclip:ARCH@PATH.",
                ) from exc
        else:
            log.warning(
                "image embedder %s has no trained checkpoint: using a seeded random initialisation "
                "(image search is meaningless without trained weights, e.g. %s in <data_dir>/models)",
                arch,
                BUILTIN_WEIGHTS,
            )
        self._model = model.to(device).eval()
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(arch)
        self.dim = int(
            model.text_projection.shape[1]
            if hasattr(model, "text_projection") and model.text_projection is not None
            else model.visual.output_dim
        )
        self.image_size = model.visual.image_size

    def _to_pil(self, image: Image.Image | np.ndarray) -> Image.Image:
        from PIL import Image

        if isinstance(image, Image.Image):
            return image.convert("RGB")
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float32)
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
            arr = np.nan_to_num(arr).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(arr).convert("RGB")

    def encode_images(
        self, images: Sequence[Image.Image | np.ndarray], *, batch_size: int = 32
    ) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised. Grey-scale and 16-bit arrays are windowed to 8-bit RGB."""
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = torch.stack(
                    [self._preprocess(self._to_pil(im)) for im in images[start : start + batch_size]]
                )
                feats = self._model.encode_image(batch.to(self.device), normalize=True)
                out.append(feats.float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 128) -> np.ndarray:
        """``(n, dim)`` float32 from the CLIP text tower, in the image space."""
        import torch

        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self._tokenizer(list(texts[start : start + batch_size]))
                feats = self._model.encode_text(tokens.to(self.device), normalize=True)
                out.append(feats.float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """The manifest block for this embedder."""
        return {
            "spec": self.spec,
            "name": self.name,
            "dim": self.dim,
            "arch": self.arch,
            "checkpoint_sha256": self.checkpoint_sha256,
            "seeded_random": self.seeded_random,
        }


def _device() -> str:
    from zebra.config import get_settings

    return get_settings().models.device


@functools.lru_cache(maxsize=4)
def _open_clip(arch: str, checkpoint: str | None, spec: str, device: str) -> OpenClipEmbedder:
    return OpenClipEmbedder(arch, Path(checkpoint) if checkpoint else None, spec=spec, device=device)


@IMAGE_EMBEDDERS.register(
    "builtin", help="zebra-med-rn16 (the built-in VLM's open_clip encoder, 256-d) with its committed weights"
)
def _builtin(arg: str = "", **_: object) -> OpenClipEmbedder:
    ckpt = builtin_checkpoint()
    return _open_clip(BUILTIN_ARCH, str(ckpt) if ckpt else None, "builtin", _device())


@IMAGE_EMBEDDERS.register(
    "openclip", help="any open_clip architecture with a local checkpoint: openclip:ARCH@PATH"
)
def _openclip(arg: str, **_: object) -> OpenClipEmbedder:
    arch, sep, path = arg.partition("@")
    if not arch or not sep or not path:
        raise ConfigError(
            f"openclip:{arg} is not ARCH@PATH.",
            hint="Use e.g. openclip:ViT-B-16@/models/clip.safetensors (a local safetensors or torch file).",
        )
    ckpt = Path(path).expanduser().resolve()
    if not ckpt.is_file():
        raise NotFoundError(
            f"Checkpoint {ckpt} does not exist.", hint="Give a local .safetensors or .pt file."
        )
    return _open_clip(arch, str(ckpt), f"openclip:{arch}@{ckpt}", _device())
