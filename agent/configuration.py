"""Run options of the agent, read from ``RunnableConfig["configurable"]`` (LangGraph's configuration channel).

Every field has a default; :meth:`Configuration.from_settings` fills the backend specs and the bundle from
Zebra's settings, :meth:`Configuration.from_runnable_config` reads what a graph run was given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from agent.errors import AgentConfigError

#: Languages the builtin answer templates exist in.
TEMPLATE_LANGUAGES: tuple[str, ...] = ("en",)


#: Values of :attr:`Configuration.findings_query`.
FINDINGS_QUERIES = ("cues", "stated", "off")


@dataclass(kw_only=True)
class Configuration:
    """Options of one agent run.

    Attributes:
        vlm: VLM backend spec (``builtin``, ``hf:/path``); images are analysed with it.
        reasoner: Reasoner backend spec (``builtin``, ``openai:http://host:8000/v1``, ``hf:/path``).
        bundle: Index bundle folder; ``None`` means Zebra's default bundle.
        intent_embedder: Text embedder spec used to route questions by intent.
        k: Size of the differential (primary + ``k - 1`` alternatives).
        n_hits: Documents retrieved per text query and aggregated into candidates.
        image_k: Images (and image -> text chunks) retrieved per query image.
        search_mode: ``hybrid``, ``dense`` or ``bm25``.
        max_candidates: Candidate diagnoses scored by the reasoner.
        risk: Target error rate of committed top-1 answers; the abstention threshold is read from the
            risk-control table of the builtin weights (``None``: the table's default).
        abstain_threshold: Explicit top-1 probability below which the agent abstains (overrides ``risk``).
        offdomain_threshold: Cosine similarity to the nearest in-domain intent prototype below which a question
            is off-domain.
        language: Answer language (the builtin templates are English; LLM reasoners are asked for it).
        weights: Builtin reasoner weights JSON; ``None`` means ``agent/weights/builtin_reasoner.json``.
        use_vlm: Analyse images with the VLM (off: images are only used for image retrieval).
        use_retrieval: Retrieve evidence (off: an ablation; the agent then abstains from diagnosing).
        save_heatmaps: Write heatmap overlays as PNG files and reference them in the answer.
        heatmap_dir: Where heatmaps go; ``None`` means ``<data_dir>/agent/heatmaps``.
        max_images: Images analysed per study (evenly spaced through a longer series).
        verify_bundle: SHA-256-check the bundle files when opening it.
        reasoner_timeout_s: Timeout of one LLM request.
        max_new_tokens: Most tokens an LLM reasoner may generate.
        findings_query: What of the image model's findings goes into the ``image findings`` text query:
            ``cues`` (stated terms and retrieval cues), ``stated`` (stated terms only) or ``off`` (no such query;
            the image still acts through the region rule, image retrieval and the agreement feature).
    """

    vlm: str = "builtin"
    reasoner: str = "builtin"
    bundle: str | None = None
    intent_embedder: str = "builtin"
    k: int = 5
    n_hits: int = 30
    image_k: int = 10
    search_mode: str = "hybrid"
    max_candidates: int = 20
    risk: float | None = None
    abstain_threshold: float | None = None
    offdomain_threshold: float = 0.45
    language: str = "en"
    weights: str | None = None
    use_vlm: bool = True
    use_retrieval: bool = True
    save_heatmaps: bool = False
    heatmap_dir: str | None = None
    max_images: int = 4
    verify_bundle: bool = True
    reasoner_timeout_s: float = 60.0
    max_new_tokens: int = 512
    findings_query: str = "cues"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> Configuration:
        """Checks ranges.

        Raises:
            AgentConfigError: For an out-of-range option.
        """
        if not 1 <= int(self.k) <= 20:
            raise AgentConfigError(f"k must be between 1 and 20, got {self.k}.", hint="Use e.g. k=5.")
        if not 1 <= int(self.n_hits) <= 1000 or not 1 <= int(self.image_k) <= 1000:
            raise AgentConfigError(
                "n_hits and image_k must be between 1 and 1000.", hint="Use e.g. 30 and 10."
            )
        if self.search_mode not in ("hybrid", "dense", "bm25"):
            raise AgentConfigError(
                f"Unknown search mode {self.search_mode!r}.", hint="Use hybrid, dense or bm25."
            )
        for name in ("risk", "abstain_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise AgentConfigError(f"{name} must lie in [0, 1], got {value}.", hint="Use e.g. 0.5.")
        if not -1.0 <= float(self.offdomain_threshold) <= 1.0:
            raise AgentConfigError("offdomain_threshold is a cosine similarity in [-1, 1].", hint="Use 0.45.")
        if int(self.max_candidates) < int(self.k):
            raise AgentConfigError("max_candidates must be at least k.", hint="Raise max_candidates.")
        if int(self.max_images) < 1:
            raise AgentConfigError("max_images must be at least 1.", hint="Use e.g. 4.")
        if self.findings_query not in FINDINGS_QUERIES:
            raise AgentConfigError(
                f"Unknown findings_query {self.findings_query!r}.",
                hint=f"Use one of {', '.join(FINDINGS_QUERIES)}.",
            )
        return self

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the options."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_settings(cls, **overrides: Any) -> Configuration:
        """Defaults from Zebra's settings (backend specs, bundle), then ``overrides`` (``None`` values ignored).

        Raises:
            AgentConfigError: For an unknown option.
        """
        from zebra.config import get_settings

        settings = get_settings()
        base: dict[str, Any] = {
            "vlm": settings.models.vlm,
            "reasoner": settings.models.reasoner,
            "bundle": str(settings.bundle_dir),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Configuration:
        """Builds a configuration from a mapping of option names.

        Raises:
            AgentConfigError: For an unknown option or a value of the wrong type.
        """
        unknown = set(values) - set(cls.field_names())
        if unknown:
            raise AgentConfigError(
                f"Unknown agent option(s): {', '.join(sorted(unknown))}.",
                hint=f"Known: {', '.join(cls.field_names())}.",
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            kwargs[f.name] = _coerce(f.name, values[f.name], f.default)
        return cls(**kwargs)

    @classmethod
    def from_runnable_config(cls, config: dict[str, Any] | None = None) -> Configuration:
        """Reads the options present in ``config["configurable"]`` (other keys, e.g. ``thread_id``, ignored)."""
        configurable = dict((config or {}).get("configurable") or {})
        names = set(cls.field_names())
        return cls.from_dict({k: v for k, v in configurable.items() if k in names})

    def to_configurable(self) -> dict[str, Any]:
        """The options as a ``configurable`` mapping (JSON-safe)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Configuration:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _coerce(name: str, value: Any, default: Any) -> Any:
    if value is None:
        return None
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int) and not isinstance(default, bool):
            return int(value)
        if isinstance(default, float) or name in ("risk", "abstain_threshold"):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise AgentConfigError(
            f"Agent option {name}={value!r} has the wrong type.", hint=f"Expected something like {default!r}."
        ) from exc
