"""``hf:PATH``: a local Hugging Face vision-language model (Qwen2-VL, Qwen2.5-VL, LLaVA) made anomaly-aware.

What the backend adds to the loaded model (see ``docs/vlm_hf.md``):

* the special tokens ``<Ano>`` and ``<Diff>``, whose input-embedding rows are the only trainable rows;
* a heatmap head on the vision tokens, a score head on the ``<Ano>`` hidden state and a change head on the
  ``<Diff>`` hidden state, loaded from ``anomaly_head.safetensors`` in the model folder when present
  (otherwise freshly initialised and the backend's name says ``untrained heads``).

One forward pass (inside ``generate`` when a caption is wanted) gives the vision tokens (the first hidden
state at the image positions), the ``<Ano>`` hidden state and the caption.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vlm.hf_arch import Architecture, detect_architecture, load_model_and_processor
from vlm.hf_heads import HEADS_FILE, AnomalyHeads, load_heads, save_heads
from vlm.hf_maps import (
    area_fraction,
    boxes_from_grid,
    change_heatmap,
    limit_pixels,
    to_pil_rgb,
    upsample,
)
from vlm.hf_tokens import ANO_TOKEN, DIFF_TOKEN, NEW_TOKENS, ensure_tokens, set_token_rows, token_rows
from vlm.registry import VLMS
from vlm.types import CHANGE_LABELS, Attributes, ChangeAnalysis, GateResult, ImageAnalysis, StudyAnalysis
from zebra.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

FINDINGS_PROMPT = "hf_findings.txt"
CHANGE_PROMPT = "hf_change.txt"


def read_prompt(name: str, token: str) -> str:
    """A prompt file from ``vlm/prompts``; ``token`` is appended when the file does not contain it."""
    text = resources.files("vlm").joinpath("prompts", name).read_text(encoding="utf-8").strip()
    return text if token in text else f"{text} {token}"


def _resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"Unknown dtype {dtype!r}.", hint="Use float32, bfloat16 or float16.")
    return resolved


class HFVisionLanguageBackend:
    """An anomaly-aware Hugging Face VLM loaded from a local folder.

    Args:
        path: Folder holding ``config.json``, the weights and the processor files (``save_pretrained``).
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``.
        dtype: Weight dtype; ``None``/``"auto"`` means float32 on the CPU and bfloat16 on a GPU.
        max_new_tokens: Caption length limit (greedy decoding); ``0`` skips the caption.
        max_pixels: Images are downscaled to at most this many pixels before the processor (CPU speed).
        threshold: Heatmap probability that starts a box.
        max_boxes: Most boxes per image.
        findings_prompt: Overrides ``vlm/prompts/hf_findings.txt``; must contain (or gets) ``<Ano>``.
        change_prompt: Overrides ``vlm/prompts/hf_change.txt``; must contain (or gets) ``<Diff>``.
        seed: Seed of untrained heads and new token rows.

    Raises:
        HFModelNotFoundError: When ``path`` is not a model folder.
        UnsupportedModelError: When the model type is not supported (the message lists those that are).
        ModelError: When the model, processor or heads cannot be loaded.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str | torch.dtype | None = None,
        max_new_tokens: int = 48,
        max_pixels: int | None = 448 * 448,
        threshold: float = 0.5,
        max_boxes: int = 5,
        findings_prompt: str | None = None,
        change_prompt: str | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.arch: Architecture = detect_architecture(self.path)
        self.device = torch.device(device)
        self.max_new_tokens = int(max_new_tokens)
        self.max_pixels = max_pixels
        self.threshold = float(threshold)
        self.max_boxes = int(max_boxes)
        self.findings_prompt = (
            read_prompt(FINDINGS_PROMPT, ANO_TOKEN) if findings_prompt is None else findings_prompt
        )
        self.change_prompt = (
            read_prompt(CHANGE_PROMPT, DIFF_TOKEN) if change_prompt is None else change_prompt
        )
        if ANO_TOKEN not in self.findings_prompt:
            self.findings_prompt = f"{self.findings_prompt} {ANO_TOKEN}"
        if DIFF_TOKEN not in self.change_prompt:
            self.change_prompt = f"{self.change_prompt} {DIFF_TOKEN}"
        self._lock = threading.RLock()

        model, processor = load_model_and_processor(
            self.path, self.arch, dtype=_resolve_dtype(dtype, str(device))
        )
        model.requires_grad_(False)
        self.model = model.to(self.device)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.token_ids, self.tokens_added = ensure_tokens(self.model, self.tokenizer, seed=seed)
        self.image_token_id = int(
            getattr(self.model.config, "image_token_id", None) or self.model.config.image_token_index
        )
        hidden = int(self.model.get_input_embeddings().weight.shape[1])

        heads_file = self.path / HEADS_FILE
        if heads_file.is_file():
            heads, rows = load_heads(heads_file, hidden_size=hidden, tokens=NEW_TOKENS)
            if rows is not None:
                set_token_rows(self.model, self.token_ids, rows)
            self.heads_trained = True
        else:
            heads = AnomalyHeads(hidden, seed=seed)
            self.heads_trained = False
            log.warning(
                "%s has no %s: heads are untrained (scores are not meaningful)", self.path, HEADS_FILE
            )
        self.heads = heads.to(self.device).eval()
        self._forward_kwargs = {"output_hidden_states": True, "return_dict": True, "use_cache": False}
        if "logits_to_keep" in inspect.signature(self.model.forward).parameters:
            self._forward_kwargs["logits_to_keep"] = 1  # the vocabulary projection is not needed

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        """Backend name + checkpoint id; says ``untrained heads`` until heads are loaded or trained."""
        flag = "" if self.heads_trained else ", untrained heads"
        return f"hf:{self.path.name} ({self.arch.model_type}{flag})"

    # ------------------------------------------------------------------ model plumbing

    def _prompt(self, n_images: int, text: str) -> str:
        if getattr(self.processor, "chat_template", None):
            content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_images)]
            content.append({"type": "text", "text": text})
            messages = [{"role": "user", "content": content}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.arch.image_placeholder(self.processor) * n_images + text

    def _prepare(self, image: Any) -> tuple[Image.Image, tuple[int, int]]:
        pil = to_pil_rgb(image)
        size = (pil.height, pil.width)
        pil = limit_pixels(pil, self.max_pixels)
        return self.arch.prepare_image(pil, self.processor), size

    def _encode(self, images: list[Any], text: str) -> Any:
        prompt = self._prompt(len(images), text)
        inputs = self.processor(text=[prompt], images=images, return_tensors="pt")
        return inputs.to(self.device)

    def _positions(self, inputs: Any, token_id: int) -> torch.Tensor:
        positions = (inputs["input_ids"][0] == token_id).nonzero().flatten()
        if positions.numel() == 0:
            raise ModelError(
                "The prompt lost its special token after tokenisation.",
                hint="Keep <Ano>/<Diff> as separate words in the prompt files.",
            )
        return positions

    def _forward(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """First and last hidden states ``(seq, hidden)`` of the prompt (grad follows the caller's mode)."""
        out = self.model(**inputs, **self._forward_kwargs)
        return out.hidden_states[0][0], out.hidden_states[-1][0]

    def _generate(self, inputs: Any) -> tuple[str, torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        out = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            output_hidden_states=True,
            return_dict_in_generate=True,
            suppress_tokens=list(self.token_ids.values()),
            pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id,
        )
        prompt_len = inputs["input_ids"].shape[1]
        caption = self.tokenizer.decode(out.sequences[0, prompt_len:], skip_special_tokens=True).strip()
        first = out.hidden_states[0]  # the prompt step: one tensor per layer, embeddings first
        return " ".join(caption.split()), first[0][0], first[-1][0]

    def _split_features(
        self, inputs: Any, embeds: torch.Tensor
    ) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        grids = self.arch.grids(inputs, self.model.config)
        tokens = embeds[inputs["input_ids"][0] == self.image_token_id]
        sizes = [r * c for r, c in grids]
        if tokens.shape[0] != sum(sizes):
            raise ModelError(
                f"Found {tokens.shape[0]} image tokens in the prompt for {sum(sizes)} vision tokens.",
                hint="The processor and the model config disagree; re-save the processor with the model.",
            )
        return list(zip(tokens.split(sizes), grids, strict=True))

    # ------------------------------------------------------------------ gate

    def gate(self, image: Any) -> GateResult:
        """The image-statistics part of :class:`vlm.gate.Gate` (blank, colour photo, noise) when that module
        exists, else a blank-image check. The gate's embedding OOD score is left out: its statistics live in
        the builtin encoder's space, not this model's."""
        from vlm.preprocess import to_gray01

        gray, rgb = to_gray01(image)
        try:
            gate_mod = importlib.import_module("vlm.gate")
        except ModuleNotFoundError as exc:
            if exc.name != "vlm.gate":
                raise
            std = float(gray.std())
            if std < 1e-3:
                return GateResult(False, "The image is blank (no contrast).", "blank", {"std": std})
            return GateResult(True, None, "medical", {"std": std})
        return gate_mod.Gate(None).decide(gate_mod.image_statistics(gray, rgb), None)

    # ------------------------------------------------------------------ public API

    def analyze_image(self, image: Any) -> ImageAnalysis:
        """Gates, then scores, localises, describes and embeds one image.

        Args:
            image: 2-D grayscale or HxWx3 array (any dtype) or a PIL image.

        Raises:
            ImageInputError: When ``image`` is not an image.
        """
        gate = self.gate(image)
        if not gate.accepted:
            return ImageAnalysis(gate, None, [], None, None, None, None, self.name)
        prepared, size = self._prepare(image)
        with self._lock, torch.inference_mode():
            inputs = self._encode([prepared], self.findings_prompt)
            if self.max_new_tokens > 0:
                caption, embeds, last = self._generate(inputs)
            else:
                caption, (embeds, last) = None, self._forward(inputs)
            ((features, grid),) = self._split_features(inputs, embeds)
            probs = torch.sigmoid(self.heads.heatmap_logits(features, grid))
            score = float(
                torch.sigmoid(
                    self.heads.score_logit(last[self._positions(inputs, self.token_ids[ANO_TOKEN])])
                )
            )
            embedding = torch.nn.functional.normalize(features.float().mean(0), dim=0).cpu().numpy()
        grid_probs = probs.float().cpu().numpy()
        boxes = boxes_from_grid(grid_probs, size, threshold=self.threshold, max_boxes=self.max_boxes)
        attributes = None
        if boxes:
            multiplicity = "multiple" if len(boxes) > 1 else "single"
            attributes = Attributes(multiplicity=multiplicity, confidences={"multiplicity": boxes[0].score})
        return ImageAnalysis(
            gate=gate,
            anomaly_score=score,
            boxes=boxes,
            heatmap=upsample(probs, size),
            attributes=attributes,
            caption=caption,
            embedding=embedding.astype(np.float32),
            model=self.name,
        )

    def analyze(self, image: Any, *, prior: Any = None) -> StudyAnalysis:
        """Analyses ``image`` and, with a ``prior`` image, the prior and the change since it.

        The change label comes from the change head on the ``<Diff>`` hidden state of one prompt holding both
        images (prior first); the change heatmap is ``|heatmap(current) - heatmap(prior)|``.

        Raises:
            ModelError: When ``prior`` is an analysis rather than an image (the pixels are needed).
        """
        current = self.analyze_image(image)
        if prior is None:
            return StudyAnalysis(current=current)
        if isinstance(prior, ImageAnalysis):
            raise ModelError(
                "The hf: backend needs the prior image itself, not its analysis.",
                hint="Pass the prior study's pixels as prior=.",
            )
        prior_analysis = self.analyze_image(prior)
        if current.heatmap is None or prior_analysis.heatmap is None:  # one of them was gated out
            return StudyAnalysis(current=current, prior=prior_analysis)
        with self._lock, torch.inference_mode():
            logits = self._change_logits(prior, image)
            probs = torch.softmax(logits.float(), dim=0).cpu().numpy()
        probabilities = {label: float(p) for label, p in zip(CHANGE_LABELS, probs, strict=True)}
        label = max(probabilities, key=probabilities.__getitem__)
        before = area_fraction(prior_analysis.heatmap, self.threshold)
        after = area_fraction(current.heatmap, self.threshold)
        statement = (
            f"{label.capitalize()} compared with the prior (change head p={probabilities[label]:.2f}); "
            f"anomalous area {before:.1%} -> {after:.1%} of the image."
        )
        if not self.heads_trained:
            statement += " Untrained change head: not meaningful."
        change = ChangeAnalysis(
            label=label,
            confidence=probabilities[label],
            probabilities=probabilities,
            diff_heatmap=change_heatmap(current.heatmap, prior_analysis.heatmap),
            statement=statement,
        )
        return StudyAnalysis(current=current, prior=prior_analysis, change=change)

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """Mean-pooled vision tokens, L2-normalised, float32 ``(n, hidden)``."""
        out: list[np.ndarray] = []
        with self._lock, torch.inference_mode():
            for image in images:
                prepared, _ = self._prepare(image)
                inputs = self.processor.image_processor(images=[prepared], return_tensors="pt").to(
                    self.device
                )
                (features,) = self.arch.image_features(self.model, inputs)
                pooled = torch.nn.functional.normalize(features.float().mean(0), dim=0)
                out.append(pooled.cpu().numpy())
        hidden = int(self.model.get_input_embeddings().weight.shape[1])
        return np.stack(out).astype(np.float32) if out else np.zeros((0, hidden), np.float32)

    # ------------------------------------------------------------------ training

    def _change_logits(self, prior: Any, current: Any) -> torch.Tensor:
        images = [self._prepare(prior)[0], self._prepare(current)[0]]
        inputs = self._encode(images, self.change_prompt)
        _, last = self._forward(inputs)
        return self.heads.change_logits(last[self._positions(inputs, self.token_ids[DIFF_TOKEN])])

    def anomaly_loss(self, image: Any, label: float) -> torch.Tensor:
        """Loss of one labelled image (1 = anomalous): BCE of the ``<Ano>`` score plus BCE of the heatmap's
        peak patch (multiple-instance learning: an anomalous image has at least one hot patch)."""
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        prepared, _ = self._prepare(image)
        inputs = self._encode([prepared], self.findings_prompt)
        embeds, last = self._forward(inputs)
        ((features, grid),) = self._split_features(inputs, embeds)
        target = torch.tensor(float(label), device=self.device)
        score = self.heads.score_logit(last[self._positions(inputs, self.token_ids[ANO_TOKEN])])
        peak = self.heads.heatmap_logits(features, grid).max()
        return bce(score, target) + bce(peak, target)

    def change_loss(self, prior: Any, current: Any, label: str) -> torch.Tensor:
        """Cross-entropy of the change head for one (prior, current) pair labelled with a :data:`CHANGE_LABELS` entry."""
        if label not in CHANGE_LABELS:
            raise ConfigError(
                f"Unknown change label {label!r}.", hint=f"Use one of {', '.join(CHANGE_LABELS)}."
            )
        logits = self._change_logits(prior, current)
        target = torch.tensor([CHANGE_LABELS.index(label)], device=self.device)
        return torch.nn.functional.cross_entropy(logits.float()[None], target)

    @contextmanager
    def token_training(self) -> Iterator[list[torch.nn.Parameter]]:
        """Unfreezes the heads and the ``<Ano>``/``<Diff>`` embedding rows (only) for the block.

        Yields:
            The parameters to optimise (heads + the embedding matrix, whose other rows get zero gradient).
        """
        from vlm.hf_tokens import token_training

        with self._lock, token_training(self.model, self.token_ids) as weight:
            self.heads.train().requires_grad_(True)
            try:
                yield [*self.heads.parameters(), weight]
            finally:
                self.heads.eval().requires_grad_(False)

    def train_tokens(
        self,
        samples: Sequence[tuple[Any, float]],
        *,
        pairs: Sequence[tuple[Any, Any, str]] = (),
        steps: int = 10,
        lr: float = 5e-3,
    ) -> list[float]:
        """A few optimisation steps on the new token rows and the heads only (see :func:`vlm.hf_train.train_tokens`)."""
        from vlm.hf_train import train_tokens

        losses = train_tokens(self, samples, pairs=pairs, steps=steps, lr=lr)
        self.heads_trained = True
        return losses

    def save_heads(self, folder: str | Path | None = None) -> Path:
        """Writes the heads and the token rows to ``<folder or model folder>/anomaly_head.safetensors``."""
        target = Path(folder).expanduser() if folder is not None else self.path
        return save_heads(
            target / HEADS_FILE,
            self.heads,
            token_rows=token_rows(self.model, self.token_ids),
            tokens=NEW_TOKENS,
            model_type=self.arch.model_type,
        )

    def save_pretrained(self, folder: str | Path) -> Path:
        """Saves the whole fine-tuned model (weights with the new tokens, processor, heads) to ``folder``."""
        target = Path(folder).expanduser()
        target.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.model.save_pretrained(str(target))
            self.processor.save_pretrained(str(target))
            self.save_heads(target)
        return target


_OPTIONS = set(inspect.signature(HFVisionLanguageBackend.__init__).parameters) - {"self", "path"}


@VLMS.register("hf", help="A local Hugging Face Qwen2-VL / Qwen2.5-VL / LLaVA folder: hf:/path/to/model")
def create_hf_vlm(arg: str, **kw: Any) -> HFVisionLanguageBackend:
    """A local Hugging Face vision-language model (Qwen2-VL, Qwen2.5-VL, LLaVA): ``hf:/path/to/model``."""
    if not arg:
        raise ConfigError(
            "The hf: VLM backend needs a model folder.", hint="Use e.g. --vlm hf:/models/Qwen2-VL-2B."
        )
    ignored = sorted(set(kw) - _OPTIONS)
    if ignored:
        log.debug("hf VLM backend ignores options %s", ignored)
    return HFVisionLanguageBackend(arg, **{k: v for k, v in kw.items() if k in _OPTIONS})
