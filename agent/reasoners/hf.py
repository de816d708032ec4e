"""``hf:PATH``: a local transformers chat model (``AutoModelForCausalLM`` + its tokenizer's chat template).

Greedy decoding, then the JSON extraction, validation and repair of :mod:`agent.reasoners.llm`; output that
is not usable (small or untuned models often write prose or broken JSON) makes the reason node fall back to
the builtin scoring, with a note. The model loads once per process (reasoners are cached by spec).
Prompts longer than the model's context keep their end (the task, the data and the schema come last).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from agent.errors import AgentConfigError, ReasonerError
from agent.reasoners import REASONERS
from agent.reasoners.base import ReasoningRequest, ReasoningResult
from agent.reasoners.llm import build_messages, interpret

log = logging.getLogger(__name__)


class HFReasoner:
    """Local chat-model reasoner (module docstring).

    Args:
        path: Model folder (config, weights, tokenizer).
        max_new_tokens: Tokens generated.
        device: Torch device (default: the ``models.device`` setting).

    Raises:
        ReasonerError: When the folder is missing or the model cannot be loaded.
    """

    def __init__(self, path: str | Path, *, max_new_tokens: int = 512, device: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ReasonerError(
                f"Reasoner model folder {self.path} does not exist.",
                hint="Pass a local model folder: hf:/path/to/model.",
            )
        if device is None:
            from zebra.config import get_settings

            device = get_settings().models.device
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.name = f"hf:{self.path.name}"
        self._lock = threading.Lock()
        self.model, self.tokenizer = self._load()

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True)
        except Exception as exc:
            raise ReasonerError(
                f"Could not load the chat model at {self.path}: {exc}.",
                hint="Check that the folder holds a complete causal LM (config, weights, tokenizer).",
            ) from exc
        model.to(self.device)
        model.eval()
        return model, tokenizer

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        text = "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)
        return f"{text}\n\nASSISTANT:"

    def complete(self, messages: list[dict[str, str]]) -> str:
        """Greedy generation for the chat ``messages``; returns the generated text only.

        Raises:
            ReasonerError: When generation fails.
        """
        import torch

        prompt = self._prompt(messages)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        ids = enc["input_ids"]
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        if limit and ids.shape[1] + self.max_new_tokens > limit:
            keep = max(1, limit - self.max_new_tokens)
            log.info("prompt of %d tokens cut to its last %d (model context %d)", ids.shape[1], keep, limit)
            ids = ids[:, -keep:]
        attention = torch.ones_like(ids)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        try:
            with self._lock, torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=attention.to(self.device),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad_id,
                )
        except Exception as exc:
            raise ReasonerError(
                f"The chat model at {self.path} failed to generate: {exc}.", hint="Use --reasoner builtin."
            ) from exc
        return str(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))

    def reason(self, request: ReasoningRequest) -> ReasoningResult:
        """Generates a differential and validates it."""
        text = self.complete(build_messages(request))
        return interpret(text, request, backend=self.name)


@REASONERS.register("hf", help="A local transformers chat model folder: hf:/path/to/model")
def _hf(arg: str, *, max_new_tokens: int = 512, **_: object) -> HFReasoner:
    if not arg:
        raise AgentConfigError("hf: needs a model folder.", hint="Use e.g. hf:/models/qwen2.5-1.5b-instruct.")
    return HFReasoner(arg, max_new_tokens=max_new_tokens)
