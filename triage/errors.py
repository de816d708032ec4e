"""Typed errors of batch triage (subclasses of :mod:`zebra.errors`)."""

from __future__ import annotations

from zebra.errors import ConfigError, DatasetError, ModelError, ZebraError


class TriageError(ZebraError):
    """A triage run could not go on."""


class WorklistError(DatasetError):
    """A worklist is missing, empty or malformed."""


class RunExistsError(ConfigError):
    """A run of that name exists and ``--resume`` was not given."""


class AnalyserError(ModelError):
    """The analyser (agent, VLM or the fake one) could not be created or failed on an item."""


class WorkerCrashError(TriageError):
    """Every worker stopped while items were left; the run can be resumed."""

    exit_code = 3
