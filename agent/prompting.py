"""Prompt files (``agent/prompts``) and the quoted-data framing of retrieved text.

Retrieved documents, captions and model outputs enter LLM prompts only inside ``<<<DATA id=...>>>`` ...
``<<<END DATA id=...>>>`` blocks, after the framing of ``data_framing.txt`` (they are data, never
instructions). Marker look-alikes inside the quoted text are defused so that a document cannot close its own
block and smuggle text outside it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from string import Template
from typing import Any

from agent.errors import AgentConfigError

#: Opening and closing markers of a quoted-data block.
DATA_OPEN = "<<<DATA id={id}>>>"
DATA_CLOSE = "<<<END DATA id={id}>>>"
_MARKER = re.compile(r"<{2,}|>{2,}")

#: JSON schema of an LLM reasoner's output.
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "differential": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "diagnosis": {"type": "string"},
                    "probability": {"type": "number", "minimum": 0, "maximum": 1},
                    "citations": {"type": "array", "items": {"type": "string"}},
                    "rationale": {"type": "string"},
                },
                "required": ["diagnosis", "probability", "citations", "rationale"],
                "additionalProperties": False,
            },
        },
        "summary": {"type": "string"},
    },
    "required": ["differential", "summary"],
    "additionalProperties": False,
}


@functools.lru_cache(maxsize=32)
def read_prompt(name: str) -> str:
    """The text of ``agent/prompts/<name>``.

    Raises:
        AgentConfigError: When the file does not exist.
    """
    try:
        return resources.files("agent").joinpath("prompts", name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise AgentConfigError(
            f"Prompt file agent/prompts/{name} is missing.", hint="Reinstall Zebra or restore the file."
        ) from exc


@functools.lru_cache(maxsize=8)
def read_json_prompt(name: str) -> dict[str, Any]:
    """A JSON prompt file (``intents.json``, ``answers.json``) as a dict.

    Raises:
        AgentConfigError: When the file is missing or not a JSON object.
    """
    try:
        data = json.loads(read_prompt(name))
    except json.JSONDecodeError as exc:
        raise AgentConfigError(
            f"agent/prompts/{name} is not valid JSON: {exc}.", hint="Fix the file."
        ) from exc
    if not isinstance(data, dict):
        raise AgentConfigError(f"agent/prompts/{name} must hold a JSON object.", hint="Fix the file.")
    return data


def render(name: str, **values: Any) -> str:
    """Renders a ``string.Template`` prompt file; unknown placeholders are left as they are."""
    return Template(read_prompt(name)).safe_substitute({k: str(v) for k, v in values.items()}).strip()


def templates(language: str = "en") -> Mapping[str, str]:
    """The answer templates of ``language`` (English when the language has none)."""
    answers = read_json_prompt("answers.json")
    return answers.get(language) or answers["en"]


def fill(template: str, **values: Any) -> str:
    """Fills an answer template."""
    return Template(template).safe_substitute({k: str(v) for k, v in values.items()}).strip()


def defuse(text: str) -> str:
    """Quoted text with marker look-alikes (``<<<``, ``>>>``) neutralised."""
    return _MARKER.sub(
        lambda m: "‹" * len(m.group(0)) if m.group(0)[0] == "<" else "›" * len(m.group(0)), text
    )


def data_block(item_id: str, header: Mapping[str, Any], body: str) -> str:
    """One quoted-data block: a header line of ``key: value`` pairs, then the defused ``body``."""
    head = "; ".join(f"{k}: {defuse(str(v))}" for k, v in header.items() if v not in (None, ""))
    return "\n".join(
        [DATA_OPEN.format(id=item_id), head, defuse(body.strip()), DATA_CLOSE.format(id=item_id)]
    )


def data_blocks(items: Iterable[Mapping[str, Any]], *, max_chars: int = 900) -> str:
    """Quoted-data blocks of evidence items (``id``, ``kind``, ``title``, ``diagnosis``, ``text``/``quote``)."""
    blocks = []
    for item in items:
        body = str(item.get("text") or item.get("quote") or item.get("caption") or "")
        if len(body) > max_chars:
            body = body[: max_chars - 1] + "…"
        header = {
            "kind": item.get("kind"),
            "title": item.get("title"),
            "labelled diagnosis": item.get("diagnosis"),
        }
        blocks.append(data_block(str(item["id"]), header, body))
    return "\n\n".join(blocks)


def system_prompt() -> str:
    """The system prompt with the data framing."""
    return render("system.txt", data_framing=read_prompt("data_framing.txt").strip())


def reasoning_prompt(
    *, question: str, history: str, candidates: str, data: str, k: int, language: str = "en"
) -> str:
    """The user message of an LLM reasoner: task, inputs, quoted data, schema."""
    text = render(
        "reasoning.txt",
        k=k,
        question=defuse(question or "(none)"),
        history=defuse(history or "(none)"),
        candidates=candidates or "(none)",
        data_framing=read_prompt("data_framing.txt").strip(),
        data=data or "(no data)",
        schema=json.dumps(OUTPUT_SCHEMA),
    )
    if language and language != "en":
        text += f"\n\nWrite the rationales and the summary in this language: {language}."
    return text
