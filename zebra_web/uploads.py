"""Streaming ``multipart/form-data`` reception with limits checked as bytes arrive.

File parts go to disk under generated names (``f00000.dcm``...): the client's file names are never kept or
logged (they often contain patient names); only a known extension survives, because NIfTI and zip are
recognised partly by it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from zebra_web.errors import BadRequestError, PayloadTooLargeError

log = logging.getLogger(__name__)

#: Extensions kept from client file names (longest first); anything else is stored without one.
KNOWN_EXTENSIONS: tuple[str, ...] = (
    ".nii.gz",
    ".dcm",
    ".dicom",
    ".zip",
    ".png",
    ".jpg",
    ".jpeg",
    ".nii",
    ".ima",
)
#: Largest non-file form field, in bytes.
MAX_FIELD_BYTES = 4096
#: Most non-file form fields.
MAX_FIELDS = 16


@dataclass
class ReceivedUpload:
    """What a multipart request carried.

    Attributes:
        files: Paths of the stored file parts, in arrival order.
        fields: Text fields (``role``, ``session_id`` ...).
        total_bytes: Bytes of file content received.
    """

    files: list[Path] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    total_bytes: int = 0


def safe_extension(filename: str) -> str:
    """The known extension of a client file name, or ``""``."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for ext in KNOWN_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return ""


class _Receiver:
    """Parser callbacks writing file parts to ``dest`` and enforcing the limits."""

    def __init__(self, dest: Path, max_bytes: int, max_files: int) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.result = ReceivedUpload()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._fh: IO[bytes] | None = None
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._error: Exception | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._headers = {}
        self._fh = None
        self._field_name = None
        self._field_value = bytearray()

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            if len(self.result.fields) >= MAX_FIELDS:
                raise BadRequestError("Too many form fields.", hint=f"Send at most {MAX_FIELDS}.")
            self._field_name = name
            return
        if len(self.result.files) >= self.max_files:
            raise PayloadTooLargeError(
                f"Too many files: at most {self.max_files} per upload.",
                hint="Upload the series as a .zip, or in several studies.",
            )
        ext = safe_extension(filename.decode("utf-8", "replace"))
        path = self.dest / f"f{len(self.result.files):05d}{ext}"
        self._fh = path.open("xb")
        self.result.files.append(path)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._fh is not None:
            self.result.total_bytes += size
            if self.result.total_bytes > self.max_bytes:
                raise PayloadTooLargeError(
                    f"The upload is larger than the limit of {self.max_bytes} bytes.",
                    hint="Upload fewer images, or ask the administrator to raise server.max_upload_bytes.",
                )
            self._fh.write(data[start:end])
        elif self._field_name is not None:
            if len(self._field_value) + size > MAX_FIELD_BYTES:
                raise BadRequestError(
                    "A form field is too long.", hint=f"Keep fields under {MAX_FIELD_BYTES} bytes."
                )
            self._field_value.extend(data[start:end])

    def on_part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._field_name is not None:
            self.result.fields[self._field_name] = self._field_value.decode("utf-8", "replace")
            self._field_name = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def body_allowance(max_bytes: int, max_files: int) -> int:
    """Most bytes of a whole upload body: the file content limit plus the multipart framing of each part."""
    return max_bytes + 1024 * (max_files + MAX_FIELDS) + 65536


async def receive_upload(request: Request, dest: Path, *, max_bytes: int, max_files: int) -> ReceivedUpload:
    """Streams a multipart request body to ``dest`` (an empty folder), enforcing the limits as it goes.

    Args:
        request: The request; its body must be ``multipart/form-data``.
        dest: Folder for the file parts.
        max_bytes: Most bytes of file content; the whole body may exceed it only by the multipart framing.
        max_files: Most file parts.

    Raises:
        PayloadTooLargeError: Over a limit (checked against ``Content-Length`` first, then while streaming).
        BadRequestError: Not multipart, malformed, or no file part.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequestError(
            "Expected a multipart/form-data upload.",
            hint="Send the files as form fields named 'files' (curl -F files=@image.dcm).",
        )
    allowance = body_allowance(max_bytes, max_files)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > allowance:
        raise PayloadTooLargeError(
            f"The upload is larger than the limit of {max_bytes} bytes.",
            hint="Upload fewer images, or ask the administrator to raise server.max_upload_bytes.",
        )
    receiver = _Receiver(dest, max_bytes, max_files)
    parser = MultipartParser(boundary, receiver.callbacks())
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > allowance:
                raise PayloadTooLargeError(
                    f"The upload is larger than the limit of {max_bytes} bytes.",
                    hint="Upload fewer images, or ask the administrator to raise server.max_upload_bytes.",
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequestError(
            "The upload is not well-formed multipart data.",
            hint="Send the files as form fields named 'files'.",
        ) from exc
    except ClientDisconnect as exc:
        raise BadRequestError("The upload was interrupted.", hint="Try again.") from exc
    finally:
        receiver.close()
    if not receiver.result.files:
        raise BadRequestError(
            "The upload contains no file.", hint="Attach at least one file in a 'files' field."
        )
    return receiver.result


class PendingUploads:
    """Uploads to chat sessions that are still being received or de-identified, counted per user and session.

    A question to a session with an upload in progress waits for it (:meth:`wait`) rather than being answered
    without the image. Waiting polls on the event loop, so it holds no worker thread; the counts are guarded
    by a lock, so any thread or event loop may use one instance.
    """

    #: Seconds between checks while a question waits.
    POLL_S = 0.05

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def track(self, user_id: int, session_id: str | None) -> Iterator[None]:
        """Marks an upload of ``user_id`` to ``session_id`` as in progress for the ``with`` block."""
        if not session_id:
            yield
            return
        key = (int(user_id), session_id)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._counts.get(key, 1) - 1
                if left > 0:
                    self._counts[key] = left
                else:
                    self._counts.pop(key, None)

    def busy(self, user_id: int, session_id: str) -> bool:
        """Whether an upload of ``user_id`` to ``session_id`` is in progress."""
        with self._lock:
            return (int(user_id), session_id) in self._counts

    async def wait(self, user_id: int, session_id: str, timeout_s: float) -> bool:
        """Waits until no upload of ``user_id`` to ``session_id`` is in progress; ``False`` on timeout."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while self.busy(user_id, session_id):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(self.POLL_S, left))
        return True
