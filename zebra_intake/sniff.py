"""Content sniffing: what a file is, from its first bytes rather than its name."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from enum import StrEnum
from pathlib import Path

#: Explicit VR codes (PS3.5 6.2); used to recognise DICOM data sets written without a preamble.
VR_CODES = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV "
    b"OW".split()
)
#: Groups a data set without a preamble normally starts with (file meta, directory, identifying).
_FIRST_GROUPS = (0x0002, 0x0004, 0x0008)

SNIFF_BYTES = 512


class Kind(StrEnum):
    """What a file's content looks like."""

    DICOM = "dicom"
    NIFTI = "nifti"
    PNG = "png"
    JPEG = "jpeg"
    ZIP = "zip"
    UNKNOWN = "unknown"


def _looks_like_bare_dataset(head: bytes) -> bool:
    """A DICOM data set without preamble/prefix: the first element is a plausible (0002|0004|0008,xxxx)."""
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, _elem = struct.unpack(order + "HH", head[:4])
        if group not in _FIRST_GROUPS:
            continue
        if head[4:6] in VR_CODES:
            return True  # explicit VR
        if order == "<":
            (length,) = struct.unpack("<I", head[4:8])
            if length < 0x10000 and length % 2 == 0:
                return True  # implicit VR little endian with a sane first length
    return False


def _nifti_header(head: bytes) -> bool:
    if len(head) >= 348:
        for order in ("<", ">"):
            (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
            if sizeof_hdr == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
                return True
            if sizeof_hdr == 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
                return True
    return False


def sniff_bytes(head: bytes) -> Kind:
    """Classifies content from its first bytes (at least :data:`SNIFF_BYTES` when available)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return Kind.DICOM
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Kind.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return Kind.JPEG
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Kind.ZIP
    if _nifti_header(head):
        return Kind.NIFTI
    if head.startswith(b"\x1f\x8b"):
        try:
            # Only the first few hundred bytes are inflated: enough for a NIfTI header, never a bomb.
            inflated = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1024)
        except zlib.error:
            return Kind.UNKNOWN
        return Kind.NIFTI if _nifti_header(inflated) else Kind.UNKNOWN
    if _looks_like_bare_dataset(head):
        return Kind.DICOM
    return Kind.UNKNOWN


def sniff_path(path: Path) -> Kind:
    """Classifies a regular file from its content. Unreadable or special files are :attr:`Kind.UNKNOWN`."""
    try:
        # O_NONBLOCK: a FIFO must not block the sniffer; it is then rejected as not a regular file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return Kind.UNKNOWN
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return Kind.UNKNOWN
    return sniff_bytes(head)
