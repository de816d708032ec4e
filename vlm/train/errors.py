"""Errors of VLM training."""

from __future__ import annotations

from zebra.errors import ConfigError, DatasetError


class TrainingDataError(DatasetError):
    """A training data set has nothing usable for the requested stage."""


class TrainingConfigError(ConfigError):
    """Inconsistent training options (stage, resume, init)."""
