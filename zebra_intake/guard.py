"""Limits and safety checks applied before any decoder sees an input.

Every check here runs on sizes read from file headers or the file system, before pixel data is decoded,
so a hostile header cannot make Zebra allocate or decompress more than the configured limits.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from zebra.config import IntakeSettings
from zebra.errors import CorruptFileError, LimitExceededError, UnsafeFileError

MiB = 1024 * 1024

#: PS3.10 7.5 allows a TIFF header in the preamble of dual-format files; all-zero is the normal case.
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")

#: Well-known signatures looked for in a rejected preamble, to name what it looks like.
_POLYGLOT_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows executable (PE/MZ)"),
    (b"\x7fELF", "a Linux executable (ELF)"),
    (b"\xfe\xed\xfa", "a macOS executable (Mach-O)"),
    (b"\xcf\xfa\xed\xfe", "a macOS executable (Mach-O)"),
    (b"\xce\xfa\xed\xfe", "a macOS executable (Mach-O)"),
    (b"\xca\xfe\xba\xbe", "a macOS universal binary or Java class"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"#!", "a script"),
)


def _setting_hint(name: str) -> str:
    return f"Raise intake.{name} in zebra.toml or ZEBRA_INTAKE__{name.upper()} if the input is trusted."


@dataclass
class Budget:
    """Running totals for one ``load_study`` call, checked against :class:`IntakeSettings`.

    Args:
        settings: The limits.
    """

    settings: IntakeSettings
    files: int = 0
    total_bytes: int = 0
    total_pixels: int = 0

    def add_file(self, name: str, nbytes: int) -> None:
        """Accounts for one more input file of ``nbytes`` bytes.

        Raises:
            LimitExceededError: When the file, the file count or the total size is over its limit.
        """
        s = self.settings
        if nbytes > s.max_file_bytes:
            raise LimitExceededError(
                f"{name} is {nbytes / MiB:.1f} MiB, over the {s.max_file_bytes / MiB:.0f} MiB limit per file.",
                hint=_setting_hint("max_file_bytes"),
            )
        self.files += 1
        if self.files > s.max_files:
            raise LimitExceededError(
                f"The input holds more than {s.max_files} files.", hint=_setting_hint("max_files")
            )
        self.total_bytes += nbytes
        if self.total_bytes > s.max_total_bytes:
            raise LimitExceededError(
                f"The input is larger than {s.max_total_bytes / MiB:.0f} MiB in total.",
                hint=_setting_hint("max_total_bytes"),
            )

    def add_pixels(self, name: str, count: int) -> None:
        """Accounts for ``count`` more pixels that are about to be decoded.

        Raises:
            LimitExceededError: When the study would hold more than ``max_pixels`` pixels.
        """
        self.total_pixels += count
        if self.total_pixels > self.settings.max_pixels:
            raise LimitExceededError(
                f"Decoding {name} would bring the study over {self.settings.max_pixels} pixels.",
                hint=_setting_hint("max_pixels"),
            )


def check_image_geometry(
    name: str,
    settings: IntakeSettings,
    *,
    rows: int,
    columns: int,
    frames: int = 1,
    samples: int = 1,
) -> int:
    """Checks header-declared dimensions against the limits, before anything is decoded.

    Returns:
        The number of pixels (rows x columns x frames) the header declares.

    Raises:
        CorruptFileError: When a dimension is zero or negative.
        LimitExceededError: When a dimension, the frame count or the pixel count is over its limit.
    """
    if rows <= 0 or columns <= 0 or frames <= 0 or samples <= 0:
        raise CorruptFileError(
            f"{name} declares an empty image ({rows} x {columns}, {frames} frame(s), {samples} sample(s)).",
            hint="The file is damaged; export it again from the source system.",
        )
    if rows > settings.max_dimension or columns > settings.max_dimension:
        raise LimitExceededError(
            f"{name} declares a {rows} x {columns} image; the limit is {settings.max_dimension} per side.",
            hint=_setting_hint("max_dimension"),
        )
    if frames > settings.max_frames:
        raise LimitExceededError(
            f"{name} declares {frames} frames; the limit is {settings.max_frames}.",
            hint=_setting_hint("max_frames"),
        )
    pixels = rows * columns * frames
    if pixels > settings.max_pixels:
        raise LimitExceededError(
            f"{name} declares {pixels} pixels; the limit is {settings.max_pixels}.",
            hint=_setting_hint("max_pixels"),
        )
    return pixels


def read_bounded(path: Path, limit: int) -> bytes:
    """Reads a regular file whole, refusing anything larger than ``limit`` bytes.

    The size is checked from ``fstat`` and again while reading, so a file that grows in between is still
    cut off.

    Raises:
        UnsafeFileError: When the path is not a regular file (a device, a FIFO ...).
        LimitExceededError: When the file is larger than ``limit``.
        CorruptFileError: When the file cannot be read.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise CorruptFileError(
            f"Cannot open {path.name}: {exc.strerror}.", hint="Check that the file exists and is readable."
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(
                f"{path.name} is not a regular file.", hint="Pass an image file, a folder or a .zip."
            )
        if info.st_size > limit:
            raise LimitExceededError(
                f"{path.name} is {info.st_size / MiB:.1f} MiB, over the {limit / MiB:.0f} MiB limit per file.",
                hint=_setting_hint("max_file_bytes"),
            )
        # Read what fstat announced plus one byte: never pre-allocate ``limit`` bytes for a small file.
        data = fh.read(info.st_size + 1)
    if len(data) > info.st_size:
        raise CorruptFileError(
            f"{path.name} changed while it was being read.", hint="Wait until the file is complete."
        )
    return data


def describe_preamble(preamble: bytes) -> str | None:
    """Returns ``None`` for an allowed DICOM preamble, else a description of what it looks like.

    PS3.10 7.5 leaves the 128-byte preamble free for dual-format files, which is what makes DICOM/PE,
    DICOM/ELF, DICOM/ZIP and DICOM/HTML polyglots possible (CVE-2019-11687). Only all-zero preambles and
    TIFF headers (dual DICOM/TIFF files) are accepted.
    """
    if not any(preamble) or preamble[:4] in TIFF_MAGICS:
        return None
    head = preamble.lstrip(b"\x00\t\r\n ")
    for magic, what in _POLYGLOT_SIGNATURES:
        if head.startswith(magic):
            return what
    lowered = head[:64].lower()
    if lowered.startswith((b"<!doctype", b"<html", b"<script", b"<?xml", b"<svg")):
        return "an HTML/XML document"
    return "unrecognised non-zero content"


def check_preamble(name: str, preamble: bytes, settings: IntakeSettings) -> str | None:
    """Enforces the polyglot-preamble policy.

    Returns:
        ``None`` when the preamble is allowed, or a warning to record when a non-standard preamble is
        accepted because ``settings.allow_nonstandard_preamble`` is set (the caller then discards it).

    Raises:
        UnsafeFileError: When the preamble is neither all zeros nor a TIFF header and the setting is off.
    """
    what = describe_preamble(preamble)
    if what is None:
        return None
    if not getattr(settings, "allow_nonstandard_preamble", False):
        raise UnsafeFileError(
            f"{name} has a DICOM preamble that holds {what}: it may be a polyglot file (CVE-2019-11687).",
            hint="Re-export the image from the source system, or set intake.allow_nonstandard_preamble = "
            "true (ZEBRA_INTAKE__ALLOW_NONSTANDARD_PREAMBLE=1) to accept it with the preamble discarded.",
        )
    return f"{name}: a non-standard DICOM preamble ({what}) was discarded."


def safe_component(part: str) -> bool:
    """Whether one path component (from a DICOMDIR or a zip) is a plain name that cannot escape."""
    if part in ("", ".", "..") or len(part) > 255:
        return False
    if any(ch in part for ch in ("/", "\\", "\x00", ":")):
        return False
    return not any(ord(ch) < 32 for ch in part)


def contained(root: Path, candidate: Path) -> Path:
    """Resolves ``candidate`` (following symlinks) and checks it stays inside ``root``.

    Raises:
        UnsafeFileError: When the resolved path is outside ``root``.
    """
    real_root = root.resolve()
    real = candidate.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise UnsafeFileError(
            f"{candidate.name} points outside the folder being read.",
            hint="Remove links and references that leave the study folder.",
        )
    return real
