"""Checkpoints of the built-in VLM: ``NAME.safetensors`` (weights) beside ``NAME.json`` (config + gate statistics).

Nothing is unpickled: weights are safetensors, everything else JSON. The open_clip export of the vision
encoder (``zebra-med-encoder.safetensors``) is written and verified by :mod:`vlm.export`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from vlm.model.config import VLMConfig
from zebra.errors import ModelError, NotFoundError

log = logging.getLogger(__name__)

FORMAT = "zebra-vlm/1"
#: Name of the shipped checkpoint (in ``vlm/weights/`` or ``<data_dir>/models/``).
DEFAULT_NAME = "zebra-vlm-v1"
ENCODER_NAME = "zebra-med-encoder"
PACKAGE_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def encoder_path(out: Path) -> Path:
    """Where a build writes its exported encoder: for the shipped build (``out`` = ``vlm/weights``) the retrieval
    package's weights, since it is the built-in image embedder of the index; otherwise beside the checkpoint."""
    from index_builder.embedders.image import BUILTIN_WEIGHTS
    from index_builder.embedders.image import PACKAGE_WEIGHTS_DIR as INDEX_WEIGHTS_DIR

    if Path(out).resolve() == PACKAGE_WEIGHTS_DIR:
        return INDEX_WEIGHTS_DIR / BUILTIN_WEIGHTS
    return Path(out) / f"{ENCODER_NAME}.safetensors"


#: Seed of the random initialisation the weights are loaded over (keeps un-trained parts reproducible).
INIT_SEED = 1234


def sidecar(path: Path) -> Path:
    """The JSON beside a ``.safetensors`` checkpoint."""
    return path.with_suffix(".json")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_state(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Writes a state dict as safetensors, atomically (shared tensors are cloned)."""
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    _atomic_write_bytes(path, save(clean, metadata=metadata))


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Reads a safetensors state dict.

    Raises:
        NotFoundError: When the file is missing.
        ModelError: When it is not a readable safetensors file.
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise NotFoundError(f"Checkpoint {path} does not exist.", hint="Check the path or train one.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelError(
            f"Checkpoint {path} is not a readable safetensors file: {exc}.", hint="Re-export or re-train it."
        ) from exc


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes pretty JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(model: torch.nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Writes ``path`` (weights) and its JSON sidecar (``meta`` + the model config + format)."""
    config: VLMConfig = model.config  # type: ignore[assignment]
    save_state(model.state_dict(), path, metadata={"format": FORMAT, "arch": config.arch})
    write_json(sidecar(path), {**meta, "format": FORMAT, "config": config.to_dict()})


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint.

    Raises:
        ModelError: When the sidecar is missing or not a Zebra VLM checkpoint.
    """
    meta_path = sidecar(path)
    if not meta_path.is_file():
        raise ModelError(
            f"Checkpoint {path} has no {meta_path.name} beside it (config and gate statistics).",
            hint="Copy the .json that was written with the .safetensors file.",
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path} is not valid JSON: {exc}.", hint="Restore the file.") from exc
    if meta.get("format") != FORMAT:
        raise ModelError(
            f"{meta_path} is not a {FORMAT} checkpoint (format={meta.get('format')!r}).",
            hint="Pass a checkpoint written by zebra vlm train / build-default.",
        )
    return meta


def load_checkpoint(path: Path, *, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Builds the network from the sidecar's config and loads the weights (strict), in eval mode.

    Raises:
        NotFoundError: Missing file.
        ModelError: Unreadable file or weights that do not fit the config.
    """
    from vlm.model.network import ZebraVLM

    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFoundError(
            f"VLM checkpoint {path} does not exist.",
            hint="Build the default with 'zebra vlm build-default' or pass builtin:/path/to/ckpt.safetensors.",
        )
    meta = read_meta(path)
    config = VLMConfig.from_dict(meta["config"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = ZebraVLM(config)
    state = load_state(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"Checkpoint {path} does not fit its own config: {str(exc)[:300]}.",
            hint="Re-export the checkpoint.",
        ) from exc
    return model.to(device).eval(), meta


def default_checkpoint() -> Path:
    """The shipped checkpoint in force: ``<data_dir>/models/zebra-vlm-v1.safetensors`` if present, else the
    one in ``vlm/weights/``.

    Raises:
        NotFoundError: When neither exists.
    """
    from zebra.config import get_settings

    for folder in (get_settings().models_dir, PACKAGE_WEIGHTS_DIR):
        path = folder / f"{DEFAULT_NAME}.safetensors"
        if path.is_file():
            return path
    raise NotFoundError(
        f"The default VLM checkpoint {DEFAULT_NAME}.safetensors is not installed.",
        hint="Build it with 'zebra vlm build-default' (see docs/vlm.md) or pass --vlm builtin:/path/ckpt.safetensors.",
    )
