"""Errors raised by the diagnostic agent, subclasses of the :mod:`zebra.errors` types."""

from __future__ import annotations

from zebra.errors import ConfigError, ModelError, NotFoundError, ZebraError


class AgentError(ZebraError):
    """The agent could not answer (a failure, not an abstention)."""


class AgentConfigError(ConfigError):
    """An agent option is invalid (unknown intent file, bad threshold, empty question and no input)."""


class AgentInputError(ConfigError):
    """An input (image, prior, history) could not be used."""


class ReasonerError(ModelError):
    """A reasoner backend failed (server unreachable, timeout, HTTP error, model that cannot be loaded)."""


class ReasonerWeightsError(ModelError):
    """The builtin reasoner's weights file is missing or malformed."""


class SessionNotFoundError(NotFoundError):
    """No checkpointed session has the given thread id."""
