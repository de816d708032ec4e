"""Typed errors of the DICOMweb integration. Messages never name the server, its credentials or a UID."""

from __future__ import annotations

from zebra.errors import ConfigError, NotFoundError, ZebraError


class DicomwebError(ZebraError):
    """A DICOMweb request failed.

    Attributes:
        stops_run: The whole server is at fault (unreachable, credentials refused), not one study: a triage
            worker returns its item to the queue and stops instead of burning every study's attempts.
    """

    stops_run: bool = False


class DicomwebNotConfiguredError(ConfigError):
    """No DICOMweb server is configured (or its settings are invalid)."""


class DicomwebQueryError(ConfigError):
    """A ``dicomweb:QUERY`` worklist is malformed."""


class DicomwebAuthError(DicomwebError):
    """The server refused the configured credentials (HTTP 401 or 403)."""

    stops_run = True


class DicomwebUnreachableError(DicomwebError):
    """The server did not answer (connection refused, timed out) after the retries."""

    stops_run = True


class DicomwebStudyGoneError(NotFoundError):
    """The study is not on the server any more (deleted or moved after the search)."""


class DicomwebAmbiguousError(DicomwebError):
    """Several studies match a value that should name one (an accession number shared by studies)."""


class DicomwebStoreError(DicomwebError):
    """STOW-RS did not store every result object."""
