"""The DICOMweb client: QIDO-RS search, WADO-RS fetch and STOW-RS store against the operator's server.

The server comes from the settings only (:class:`zebra.config.DicomwebSettings`). Its URL and credentials
are registered with the log redaction and never put in an error message; errors name what failed and the
HTTP status only. ``dicomweb_client`` and ``urllib3`` log request URLs (with study UIDs) at debug level, so
their loggers are held at WARNING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from pacs.errors import (
    DicomwebAuthError,
    DicomwebError,
    DicomwebNotConfiguredError,
    DicomwebStoreError,
    DicomwebStudyGoneError,
    DicomwebUnreachableError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Study attributes asked for in QIDO-RS searches (what the worklist needs; nothing else is kept).
STUDY_FIELDS: tuple[str, ...] = (
    "StudyInstanceUID",
    "AccessionNumber",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "ModalitiesInStudy",
)
#: Studies asked for per QIDO-RS page.
SEARCH_PAGE = 500
#: WADO-RS Accept header: every instance in the transfer syntax the server stores it in.
_ACCEPT_ANY_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _quiet_url_loggers() -> None:
    for name in ("dicomweb_client", "urllib3.connectionpool"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


class DicomwebClient:
    """A thin, typed wrapper of ``dicomweb_client.DICOMwebClient``.

    Args:
        url: DICOMweb base URL. username, password: HTTP basic authentication (both or neither).
        token: Bearer token (instead of basic authentication).
        verify_tls: Verify the certificate (or a CA bundle path). timeout_s: Per-request timeout.
        fetch_attempts: Tries of a WADO-RS fetch. backoff_s: First wait between tries (doubled each time).
        sleep: Waits between tries (tests pass a fake).

    Raises:
        DicomwebNotConfiguredError: For a URL that is not http(s).
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        verify_tls: bool | str = True,
        timeout_s: float = 60.0,
        fetch_attempts: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        from zebra.logs import register_identifier

        url = (url or "").strip().rstrip("/")
        if not url.lower().startswith(("http://", "https://")):
            raise DicomwebNotConfiguredError(
                "The DICOMweb URL must start with http:// or https://.",
                hint="Fix [dicomweb] url (or ZEBRA_DICOMWEB__URL).",
            )
        for secret in (url, password, token):
            if secret:
                register_identifier(secret)
        _quiet_url_loggers()
        session = requests.Session()
        session.verify = verify_tls
        # Credentials live on the session, not in headers dictionaries that the library logs.
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif username is not None or password is not None:
            session.auth = (username or "", password or "")
        try:
            self._client = DICOMwebClient(url=url, session=session, timeout=timeout_s)
        except ValueError as exc:
            raise DicomwebNotConfiguredError(
                "The DICOMweb URL is malformed.", hint="Fix [dicomweb] url (or ZEBRA_DICOMWEB__URL)."
            ) from exc
        # Retries are ours (backoff, then a typed error); the library's would retry silently for minutes.
        self._client.set_http_retry_params(retry=False)
        self._base = url
        self.fetch_attempts = max(1, int(fetch_attempts))
        self.backoff_s = max(0.0, float(backoff_s))
        self._sleep = sleep

    def __repr__(self) -> str:  # never the URL or the credentials
        return "DicomwebClient(<configured server>)"

    @classmethod
    def from_settings(cls, settings: Any | None = None) -> DicomwebClient:
        """The client of the operator's server (``[dicomweb]`` settings / ``ZEBRA_DICOMWEB__*``).

        Raises:
            DicomwebNotConfiguredError: When no URL is set.
        """
        if settings is None:
            from zebra.config import get_settings

            settings = get_settings()
        cfg = settings.dicomweb
        if not cfg.url:
            raise DicomwebNotConfiguredError(
                "No DICOMweb server is configured.",
                hint="Set [dicomweb] url in zebra.toml or ZEBRA_DICOMWEB__URL (see docs/pacs.md).",
            )
        return cls(
            cfg.url,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            token=cfg.token.get_secret_value() if cfg.token else None,
            verify_tls=cfg.verify_tls,
            timeout_s=cfg.timeout_s,
            fetch_attempts=cfg.fetch_attempts,
            backoff_s=cfg.backoff_s,
        )

    # ------------------------------------------------------------------------------------------------ QIDO
    def search_studies(self, filters: dict[str, Any], *, limit: int | None = None) -> list[dict[str, Any]]:
        """QIDO-RS study search (every page).

        Args:
            filters: Attribute keywords (or tags) to values, as in a QIDO-RS query string.
            limit: Most studies returned (``None``: all).

        Returns:
            DICOM JSON study records.

        Raises:
            DicomwebAuthError, DicomwebUnreachableError, DicomwebError: When the search fails.
        """
        from urllib.parse import quote

        # The query string is built here: dicomweb_client percent-encodes '*', and servers (Orthanc among
        # them) then match a literal asterisk instead of the wildcard.
        terms = [f"{quote(str(k), safe='')}={quote(str(v), safe='*,-.:^')}" for k, v in filters.items()]
        terms += [f"includefield={name}" for name in STUDY_FIELDS]
        url = f"{self._base}/studies"
        results: list[dict[str, Any]] = []
        while limit is None or len(results) < limit:
            page = SEARCH_PAGE if limit is None else min(SEARCH_PAGE, limit - len(results))
            query = "&".join([*terms, f"limit={page}", f"offset={len(results)}"])
            found = self._call(
                "search", lambda q=query: self._client._http_get_application_json(f"{url}?{q}")
            )
            results.extend(found)
            if len(found) < page:
                break
        return results

    # ------------------------------------------------------------------------------------------------ WADO
    def fetch_study(self, study_uid: str) -> list[bytes]:
        """WADO-RS retrieve of a whole study as the raw Part 10 bytes of its instances.

        The bytes are not parsed here: intake's hardened reader is the only parser of what a server sends.
        Connection failures, timeouts and 5xx answers are retried ``fetch_attempts`` times with backoff.

        Raises:
            DicomwebStudyGoneError: The server does not have the study (HTTP 404 or an empty answer).
            DicomwebAuthError, DicomwebUnreachableError, DicomwebError: Otherwise.
        """

        def get() -> list[bytes]:
            # Private helpers: the public retrieve_study parses every part with pydicom before intake can.
            response = self._client._http_get(
                f"{self._base}/studies/{study_uid}", headers={"Accept": _ACCEPT_ANY_DICOM}
            )
            if response.headers.get("Content-Type", "").lower().startswith("application/dicom"):
                return [response.content]  # a single, non-encapsulated part (non-conformant servers)
            return [bytes(p) for p in self._client._decode_multipart_message(response, stream=False)]

        parts = self._retrying("fetch", get)
        if not parts:
            raise DicomwebStudyGoneError(
                "The study is no longer on the DICOMweb server (it holds no instance now).",
                hint="It was deleted or moved after the search; nothing was analysed.",
            )
        return parts

    # ------------------------------------------------------------------------------------------------ STOW
    def store(self, datasets: Sequence[Dataset], *, study_uid: str | None = None) -> None:
        """STOW-RS store of ``datasets``.

        Raises:
            DicomwebStoreError: When the server stored not every instance.
            DicomwebAuthError, DicomwebUnreachableError, DicomwebError: When the request fails.
        """
        response = self._retrying(
            "store", lambda: self._client.store_instances(list(datasets), study_instance_uid=study_uid)
        )
        failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
        if failed:
            reasons = sorted({str(getattr(x, "FailureReason", "?")) for x in failed})
            raise DicomwebStoreError(
                f"The DICOMweb server refused {len(failed)} of {len(datasets)} result object(s) "
                f"(failure reason {', '.join(reasons)}).",
                hint="See the server's log; results are written again on the next try.",
            )

    # ------------------------------------------------------------------------------------------------ errors
    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        wait = self.backoff_s
        for attempt in range(1, self.fetch_attempts + 1):
            try:
                return self._call(what, fn)
            except (DicomwebUnreachableError, _ServerError) as exc:
                if attempt >= self.fetch_attempts:
                    if isinstance(exc, _ServerError):
                        raise DicomwebError(exc.message, hint=exc.hint) from None
                    raise
                log.info(
                    "DICOMweb %s failed (%s), try %d of %d in %.1f s",
                    what,
                    type(exc).__name__,
                    attempt + 1,
                    self.fetch_attempts,
                    wait,
                )
                self._sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import requests

        try:
            return fn()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise _http_error(what, status) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise DicomwebUnreachableError(
                f"The DICOMweb server did not answer the {what} request ({type(exc).__name__}).",
                hint="Check that it runs and that [dicomweb] url is right; then run again (with --resume).",
            ) from None
        except requests.RequestException as exc:
            raise DicomwebError(
                f"The DICOMweb {what} request failed ({type(exc).__name__}).",
                hint="Check [dicomweb] in the settings.",
            ) from None


class _ServerError(DicomwebError):
    """A 5xx answer (retried)."""


def _http_error(what: str, status: int) -> DicomwebError | DicomwebStudyGoneError:
    if status in (401, 403):
        return DicomwebAuthError(
            f"The DICOMweb server refused the credentials (HTTP {status}) for the {what} request.",
            hint="Check [dicomweb] username/password or token (ZEBRA_DICOMWEB__USERNAME, __PASSWORD, __TOKEN).",
        )
    if status == 404 and what == "fetch":
        return DicomwebStudyGoneError(
            "The study is no longer on the DICOMweb server (HTTP 404).",
            hint="It was deleted or moved after the search; nothing was analysed.",
        )
    if status >= 500:
        return _ServerError(
            f"The DICOMweb server failed the {what} request (HTTP {status}).",
            hint="See the server's log; run again with --resume once it is fixed.",
        )
    return DicomwebError(
        f"The DICOMweb server rejected the {what} request (HTTP {status}).",
        hint="Check the query and [dicomweb] url (the DICOMweb root, e.g. .../dicom-web).",
    )
