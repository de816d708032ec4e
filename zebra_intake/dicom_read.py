"""Reading one DICOM file safely: bounded bytes, preamble policy, header-first limit checks.

Order of operations for every file:

1. read at most ``max_file_bytes`` into memory (one read: no time-of-check/time-of-use gap);
2. check the 128-byte preamble (polyglot defence) and, when accepted by setting, zero it;
3. read the file meta group; for Deflated transfer syntax inflate once with a bound to refuse bombs;
4. parse the header with ``stop_before_pixels=True`` and check Rows, Columns, NumberOfFrames,
   SamplesPerPixel and BitsAllocated against the limits, and that a decoder for the transfer syntax is
   installed;
5. only then parse the whole data set, pixel data included.
"""

from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
    MediaStorageDirectoryStorage,
)

from zebra.config import IntakeSettings
from zebra.errors import (
    CorruptFileError,
    LimitExceededError,
    MissingCodecError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from zebra_intake.failures import DICOM_ERRORS, quiet_decoders, translated
from zebra_intake.guard import Budget, check_image_geometry, check_preamble, read_bounded

log = logging.getLogger(__name__)

#: Elements larger than this are skipped (not loaded) while the header is checked.
HEADER_DEFER_BYTES = 4096
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_VALID_BITS = (1, 8, 16, 32, 64)
_CHUNK = 1 << 20


@dataclass
class DicomHeader:
    """A DICOM file that passed the pre-decoding checks.

    Attributes:
        name: Base name of the file.
        data: The file's bytes (preamble zeroed when a non-standard one was accepted).
        force: Whether pydicom must be forced (no preamble/prefix).
        header: The data set without pixel data (large values deferred, never read).
        transfer_syntax: Transfer syntax UID, or ``None`` when the file has no file meta.
        declared_pixels: Rows x Columns x Frames from the header, 0 for non-image objects.
        warnings: Notes to surface to the user.
        is_dicomdir: Whether this is a DICOMDIR (a file-set directory, no image).
    """

    name: str
    data: bytes
    force: bool
    header: FileDataset
    transfer_syntax: UID | None
    declared_pixels: int = 0
    warnings: list[str] = field(default_factory=list)

    is_dicomdir: bool = False


def header_int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    """An integer attribute, or ``default`` when absent; garbage is a :class:`CorruptFileError`."""
    if keyword not in ds:
        return default
    value: Any = ds[keyword].value
    if value is None or value == "":
        return default
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else default
    try:
        return int(float(str(value).strip())) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptFileError(
            f"The {keyword} attribute is not a number.", hint="The file is damaged; re-export it."
        ) from exc


def _check_deflate(name: str, compressed: bytes, settings: IntakeSettings) -> None:
    """Inflates a Deflated Explicit VR data set in chunks, keeping nothing, to bound its real size."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    pending = compressed
    while pending:
        total += len(inflater.decompress(pending, _CHUNK))
        pending = inflater.unconsumed_tail
        if total > settings.max_file_bytes:
            raise LimitExceededError(
                f"{name} inflates to more than {settings.max_file_bytes >> 20} MiB.",
                hint="Raise intake.max_file_bytes (ZEBRA_INTAKE__MAX_FILE_BYTES) if the file is trusted.",
            )
        if inflater.eof:
            break
    if total > _CHUNK and total > settings.max_zip_ratio * max(1, len(compressed)):
        raise UnsafeFileError(
            f"{name} inflates {total // max(1, len(compressed))} times (limit {settings.max_zip_ratio}).",
            hint="This looks like a decompression bomb; raise intake.max_zip_ratio only for trusted files.",
        )


def _check_codec(name: str, ts: UID | None, *, bits_stored: int | None = None) -> None:
    if ts is None:
        return
    if ts.is_private or not ts.is_transfer_syntax:
        raise UnsupportedFormatError(
            f"{name} uses an unknown or private transfer syntax.",
            hint="Convert it to a standard transfer syntax (e.g. Explicit VR Little Endian).",
        )
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise MissingCodecError(
            f"{name} uses the transfer syntax '{ts.name}', which no installed pixel decoder supports.",
            hint="Convert it to an uncompressed transfer syntax (e.g. dcmdjpeg, gdcmconv --raw).",
        ) from exc
    if not decoder.is_available:
        raise MissingCodecError(
            f"{name} uses the transfer syntax '{ts.name}' and no decoder for it is installed.",
            hint="Install pylibjpeg with its plugins (pylibjpeg-libjpeg, pylibjpeg-openjpeg, "
            "pylibjpeg-rle) or python-gdcm, or convert the file to an uncompressed transfer syntax.",
        )
    if ts == JPEGExtended12Bit and (bits_stored or 8) > 8 and list(decoder.available_plugins) == ["pillow"]:
        raise MissingCodecError(
            f"{name} holds 12-bit JPEG Extended pixel data, which Pillow (the only installed decoder) "
            "cannot decode.",
            hint="Install pylibjpeg and pylibjpeg-libjpeg, or convert the file to an uncompressed transfer syntax.",
        )


def read_header(path: Path, settings: IntakeSettings, budget: Budget, notes: list[int]) -> DicomHeader:
    """Runs steps 1-4: bounded read, preamble policy, deflate bound, header limits and codec check.

    Args:
        path: The file.
        settings: Intake limits.
        budget: Running totals of this ``load_study`` call.
        notes: ``notes[0]`` counts decoder warnings that were silenced.

    Raises:
        UnsafeFileError, LimitExceededError, CorruptFileError, MissingCodecError, UnsupportedFormatError.
    """
    name = path.name
    data = read_bounded(path, settings.max_file_bytes)
    budget.add_file(name, len(data))
    warnings: list[str] = []
    has_prefix = len(data) >= 132 and data[128:132] == b"DICM"
    if has_prefix:
        accepted = check_preamble(name, data[:128], settings)
        if accepted is not None:
            # Sanitise: the preamble is neither kept nor ever written back.
            data = bytes(128) + data[128:]
            warnings.append(accepted)
    with quiet_decoders(notes), translated(name, "reading the DICOM file meta", DICOM_ERRORS):
        fp = io.BytesIO(data)
        read_preamble(fp, force=not has_prefix)
        meta = _read_file_meta_info(fp)
        raw_ts = meta.get("TransferSyntaxUID")
        ts = UID(str(raw_ts).strip().rstrip("\x00")) if raw_ts else None
        if ts == DeflatedExplicitVRLittleEndian:
            _check_deflate(name, data[fp.tell() :], settings)
    with quiet_decoders(notes), translated(name, "reading the DICOM header", DICOM_ERRORS):
        header = pydicom.dcmread(
            io.BytesIO(data),
            defer_size=HEADER_DEFER_BYTES,
            stop_before_pixels=True,
            force=not has_prefix,
        )
    result = DicomHeader(
        name=name, data=data, force=not has_prefix, header=header, transfer_syntax=ts, warnings=warnings
    )
    with translated(name, "checking the image header", DICOM_ERRORS):
        # Values are converted lazily by pydicom, so even these lookups may meet garbage.
        sop = str(getattr(header, "file_meta", Dataset()).get("MediaStorageSOPClassUID", "") or "")
        result.is_dicomdir = sop == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in header
        if result.is_dicomdir:
            return result
        rows = header_int(header, "Rows")
        columns = header_int(header, "Columns")
        if rows is None and columns is None:
            return result  # not an image (SR, RT plan ...): the caller decides
        frames = header_int(header, "NumberOfFrames", 1) or 1
        samples = header_int(header, "SamplesPerPixel", 1) or 1
        bits = header_int(header, "BitsAllocated", None)
        bits_stored = header_int(header, "BitsStored", None)
    if bits is not None and bits not in _VALID_BITS:
        raise CorruptFileError(
            f"{name} declares {bits} bits allocated per pixel.", hint="The file is damaged; re-export it."
        )
    if samples not in (1, 3):
        raise UnsupportedFormatError(
            f"{name} has {samples} samples per pixel; Zebra reads grayscale (1) and colour (3) images.",
            hint="Convert the image to grayscale or RGB.",
        )
    result.declared_pixels = check_image_geometry(
        name, settings, rows=rows or 0, columns=columns or 0, frames=frames, samples=samples
    )
    budget.add_pixels(name, result.declared_pixels)
    if ts is None:
        result.transfer_syntax = _infer_syntax(header)
        result.warnings.append(
            f"{name}: no transfer syntax in the file meta; assumed {result.transfer_syntax.name}."
        )
    _check_codec(name, result.transfer_syntax, bits_stored=bits_stored)
    return result


def _infer_syntax(header: Dataset) -> UID:
    """The native transfer syntax pydicom detected while parsing a file without file meta."""
    implicit, little = getattr(header, "original_encoding", (True, True))
    if implicit is not False:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian


def read_dataset(head: DicomHeader, notes: list[int]) -> FileDataset:
    """Step 5: parses the whole data set (pixel data included) from the checked bytes."""
    with quiet_decoders(notes), translated(head.name, "reading the DICOM data set", DICOM_ERRORS):
        ds = pydicom.dcmread(io.BytesIO(head.data), force=head.force)
        ds.preamble = None  # never kept (see the polyglot policy)
        if head.transfer_syntax is not None and "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = head.transfer_syntax
    has_pixels = any(k in ds for k in PIXEL_KEYWORDS)
    if not has_pixels and head.declared_pixels:
        raise CorruptFileError(
            f"{head.name} describes an image but its pixel data is missing or truncated.",
            hint="The file is damaged; export it again from the source system.",
        )
    if not has_pixels:
        raise UnsupportedFormatError(
            f"{head.name} is a DICOM object without pixel data (SOP class "
            f"{_sop_name(ds)}); Zebra reads images only.",
            hint="Pass the image series rather than reports, plans or structure sets.",
        )
    if not head.declared_pixels:
        raise CorruptFileError(
            f"{head.name} has pixel data but no Rows/Columns to describe it.",
            hint="The file is damaged; export it again from the source system.",
        )
    return ds


def _sop_name(ds: Dataset) -> str:
    try:
        return UID(str(ds.get("SOPClassUID", "") or "")).name or "unknown"
    except DICOM_ERRORS:  # the value is converted lazily and may itself be garbage
        return "unknown"
