"""Errors of the web app. Each carries the HTTP status it is answered with, as JSON ``{error, hint}``."""

from __future__ import annotations

from zebra.errors import (
    ConfigError,
    CorruptFileError,
    IntakeError,
    LimitExceededError,
    MissingCodecError,
    NotFoundError,
    UnsafeFileError,
    UnsupportedFormatError,
    ZebraError,
)


class WebError(ZebraError):
    """A request the server refuses; ``status_code`` is the HTTP status of the answer."""

    status_code: int = 400


class BadRequestError(WebError):
    """Malformed input (missing field, bad parameter value)."""

    status_code = 400


class AuthenticationError(WebError):
    """No valid credentials: missing, unknown, expired or revoked token, or a wrong password."""

    status_code = 401


class CSRFError(WebError):
    """A state-changing request authenticated by cookie lacks the matching ``X-CSRF-Token`` header."""

    status_code = 403


class PermissionDeniedError(WebError):
    """Signed in, but not allowed (admin-only action)."""

    status_code = 403


class ResourceNotFoundError(WebError, NotFoundError):
    """The record does not exist or belongs to someone else (the two are not told apart)."""

    status_code = 404


class PayloadTooLargeError(WebError, LimitExceededError):
    """An upload is over the byte or file-count limit."""

    status_code = 413


class RateLimitedError(WebError):
    """Too many failed sign-ins; ``retry_after`` says how many seconds to wait."""

    status_code = 429

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, int(retry_after))


class StudyNotReadyError(WebError):
    """A question arrived while an upload to its session is still being received or de-identified.

    The question was not stored or answered: ask again once the upload is done (``retry_after`` seconds is a
    fair first pause).
    """

    status_code = 409

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, int(retry_after))


class ServerBusyError(WebError):
    """Too many sign-ins are being checked at once; ``retry_after`` says how many seconds to wait."""

    status_code = 503

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, int(retry_after))


class ConflictError(WebError):
    """The request cannot be done in the server's present state (a feature not set up, an ambiguous name)."""

    status_code = 409


class PacsUnavailableError(WebError):
    """The PACS did not answer, refused the server's credentials or is misconfigured (details in the log)."""

    status_code = 503


class UploadTimeoutError(WebError, IntakeError):
    """Parsing an upload took longer than allowed."""

    status_code = 422


class AgentUnavailableError(WebError):
    """The diagnostic agent could not be loaded or failed to answer."""

    status_code = 503


#: HTTP status of the non-web Zebra errors that requests can raise (most specific first).
_STATUS_BY_TYPE: tuple[tuple[type[ZebraError], int], ...] = (
    (LimitExceededError, 413),
    (UnsupportedFormatError, 415),
    (CorruptFileError, 422),
    (UnsafeFileError, 422),
    (MissingCodecError, 422),
    (IntakeError, 422),
    (NotFoundError, 404),
    (ConfigError, 400),
)


def status_for(error: ZebraError) -> int:
    """The HTTP status for a :class:`ZebraError` (500 for kinds that are the server's fault)."""
    if isinstance(error, WebError):
        return error.status_code
    for kind, status in _STATUS_BY_TYPE:
        if isinstance(error, kind):
            return status
    return 500
