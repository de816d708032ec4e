"""Errors raised by the evaluation harness, subclasses of the :mod:`zebra.errors` types."""

from __future__ import annotations

from zebra.errors import BackendNotFoundError, ConfigError, DatasetError, ZebraError


class EvalError(ZebraError):
    """An evaluation could not be run or scored."""


class EvalConfigError(ConfigError):
    """An evaluation option is invalid (inputs, ablations, predictor arguments, judge spec)."""


class PredictorNotAvailableError(BackendNotFoundError):
    """A registered predictor exists by name but its backend is not available (yet)."""


class EvalDataError(DatasetError):
    """The evaluation data set or a run folder is missing parts or malformed."""


class JudgeError(EvalError):
    """A judge could not answer (LLM server unreachable, malformed reply)."""
