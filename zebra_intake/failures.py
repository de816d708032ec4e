"""Turns the exceptions that third-party decoders raise on damaged input into typed Zebra errors.

Each reader names the exception families its library is known to raise on garbage; anything outside them
(a real bug in Zebra) still propagates, so the fuzzer can find it.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator

from nibabel.casting import CastingError, FloatingError
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, ImageDataError
from PIL.Image import DecompressionBombError
from pydicom.errors import BytesLengthException, InvalidDicomError

from zebra.errors import CorruptFileError, ZebraError

#: Raised by pydicom (and NumPy underneath it) on malformed DICOM.
DICOM_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,  # a value whose length is not a multiple of its VR's size
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    LookupError,  # KeyError, IndexError, unknown character sets
    struct.error,
    OverflowError,
    EOFError,
    zlib.error,
    NotImplementedError,  # unknown VRs and transfer syntaxes met while parsing
    OSError,  # pydicom's "No tag to read at file position" (reads come from memory, never from disk)
)

#: Raised while decoding pixel data; pydicom reports missing Image Pixel attributes as AttributeError.
#: ZeroDivisionError: pydicom's segmented palette LUT expansion divides by header values.
PIXEL_ERRORS: tuple[type[BaseException], ...] = (
    *DICOM_ERRORS,
    AttributeError,
    RuntimeError,
    ZeroDivisionError,
)

#: Raised by Pillow on damaged PNG/JPEG (it uses SyntaxError for broken chunks).
RASTER_ERRORS: tuple[type[BaseException], ...] = (
    DecompressionBombError,
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    SyntaxError,
    ValueError,
    TypeError,
    LookupError,
    struct.error,
    EOFError,
    zlib.error,
)

#: Raised by nibabel on damaged headers and data (its own error classes derive from Exception).
NIFTI_ERRORS: tuple[type[BaseException], ...] = (
    HeaderDataError,
    ImageDataError,
    ImageFileError,
    CastingError,
    FloatingError,
    ValueError,
    TypeError,
    LookupError,
    OSError,  # includes gzip.BadGzipFile
    EOFError,
    zlib.error,
    struct.error,
    OverflowError,
)


@contextlib.contextmanager
def translated(name: str, what: str, families: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Converts the listed exception families raised inside the block to :class:`CorruptFileError`.

    The original message is not kept: decoders sometimes quote header values, which may identify a
    patient. Typed Zebra errors pass through unchanged.

    Args:
        name: File name used in the message.
        what: What was being done, e.g. ``"reading the DICOM header"``.
        families: Exception types to convert.
    """
    try:
        yield
    except ZebraError:
        raise
    except RecursionError as exc:
        raise CorruptFileError(
            f"{name} is nested too deeply while {what}.", hint="The file is damaged or hostile; re-export it."
        ) from exc
    except families as exc:
        raise CorruptFileError(
            f"{name} could not be decoded while {what} ({type(exc).__name__}).",
            hint="The file is damaged, truncated or not what its content claims; re-export it from the "
            "source system.",
        ) from exc


class _CountingFilter(logging.Filter):
    """Drops every record of a third-party logger (they may quote header values) and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.count += 1
        return False


@contextlib.contextmanager
def quiet_decoders(counter: list[int]) -> Iterator[None]:
    """Silences warnings and log records from decoders while reading untrusted input.

    pydicom, nibabel and Pillow put header values (possibly a patient's name) into warnings and log
    messages; these never reach Zebra's logs. Their number is added to ``counter[0]`` so the caller can
    report that the input was not fully conformant.
    """
    # Logger filters do not apply to records propagated from child loggers, so every child gets one.
    names = {"pydicom", "nibabel", "PIL"}
    names.update(
        n
        for n in list(logging.root.manager.loggerDict)
        if n.split(".", 1)[0] in {"pydicom", "nibabel", "PIL"}
    )
    loggers = [logging.getLogger(n) for n in sorted(names)]
    filt = _CountingFilter()
    for lg in loggers:
        lg.addFilter(filt)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)
        counter[0] += filt.count + len(caught)
