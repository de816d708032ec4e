"""Seeded, format-aware mutations of medical-image files for the intake fuzzer.

Every mutation is a pure function of (input bytes, ``random.Random`` state), so a case is reproduced from
(seed file, fuzz seed, case index) alone.
"""

from __future__ import annotations

import gzip
import random
import struct
import zlib
from collections.abc import Callable

INTERESTING_8 = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0x0000, 0x0001, 0x00FF, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
INTERESTING_32 = (0, 1, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)

#: (group, element) of Image Pixel attributes worth rewriting, with their VR.
IMAGE_FIELDS: dict[str, tuple[int, int, str]] = {
    "Rows": (0x0028, 0x0010, "US"),
    "Columns": (0x0028, 0x0011, "US"),
    "NumberOfFrames": (0x0028, 0x0008, "IS"),
    "SamplesPerPixel": (0x0028, 0x0002, "US"),
    "BitsAllocated": (0x0028, 0x0100, "US"),
    "BitsStored": (0x0028, 0x0101, "US"),
    "HighBit": (0x0028, 0x0102, "US"),
    "PixelRepresentation": (0x0028, 0x0103, "US"),
    "PlanarConfiguration": (0x0028, 0x0006, "US"),
    "PhotometricInterpretation": (0x0028, 0x0004, "CS"),
    "TransferSyntaxUID": (0x0002, 0x0010, "UI"),
    "WindowWidth": (0x0028, 0x1051, "DS"),
    "RescaleSlope": (0x0028, 0x1053, "DS"),
}
_BIG_NUMBERS = ("0", "1", "-1", "1000000", "100000", "4294967296", "1e308", "nan", "65536", "2048", "A1")
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL_422", "YBR_FULL", "XYZ")
_SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
    "1.2.3.4",
)
_VRS = (b"SQ", b"UN", b"OB", b"OW", b"US", b"UL", b"DS", b"IS", b"PN", b"UI", b"XX", b"\x00\x00")
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_PREAMBLES = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff",
    b"\x7fELF\x02\x01\x01\x00",
    b"PK\x03\x04\x14\x00\x00\x00",
    b"<html><script>alert(1)</script>",
    b"%PDF-1.7\n",
    b"II*\x00\x08\x00\x00\x00",
    b"\x00" * 16,
)


def _find_all(data: bytes, needle: bytes, limit: int = 64) -> list[int]:
    hits: list[int] = []
    start = 0
    while len(hits) < limit:
        at = data.find(needle, start)
        if at < 0:
            break
        hits.append(at)
        start = at + 1
    return hits


def bit_flip(data: bytearray, rng: random.Random) -> str:
    count = rng.randint(1, 8)
    for _ in range(count):
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
    return f"bit_flip x{count}"


def interesting_value(data: bytearray, rng: random.Random) -> str:
    width = rng.choice((1, 2, 4))
    if len(data) < width:
        return "noop"
    at = rng.randrange(len(data) - width + 1)
    order = rng.choice("<>")
    if width == 1:
        data[at] = rng.choice(INTERESTING_8)
    elif width == 2:
        data[at : at + 2] = struct.pack(order + "H", rng.choice(INTERESTING_16))
    else:
        data[at : at + 4] = struct.pack(order + "I", rng.choice(INTERESTING_32))
    return f"interesting{width * 8}@{at}"


def truncate(data: bytearray, rng: random.Random) -> str:
    keep = rng.choice((rng.randrange(len(data)), len(data) - rng.randint(1, min(64, len(data)))))
    del data[max(0, keep) :]
    return f"truncate@{keep}"


def duplicate_chunk(data: bytearray, rng: random.Random) -> str:
    size = rng.randint(1, max(1, min(512, len(data) // 4)))
    src = rng.randrange(max(1, len(data) - size))
    dst = rng.randrange(len(data) + 1)
    data[dst:dst] = data[src : src + size]
    return f"dup{size}@{src}->{dst}"


def delete_chunk(data: bytearray, rng: random.Random) -> str:
    size = rng.randint(1, max(1, min(512, len(data) // 4)))
    at = rng.randrange(max(1, len(data) - size))
    del data[at : at + size]
    return f"del{size}@{at}"


def _element_sites(data: bytes, group: int, elem: int) -> list[tuple[int, bool]]:
    """Offsets of an element's tag, with whether it looks explicit VR (little endian only)."""
    sites = []
    for at in _find_all(data, struct.pack("<HH", group, elem), 8):
        explicit = data[at + 4 : at + 6].isalpha() and data[at + 4 : at + 6].isupper()
        sites.append((at, explicit))
    return sites


def header_field(data: bytearray, rng: random.Random) -> str:
    """Rewrites an Image Pixel / transfer syntax value: huge Rows/Columns/NumberOfFrames and friends."""
    name = rng.choice(list(IMAGE_FIELDS))
    group, elem, vr = IMAGE_FIELDS[name]
    sites = _element_sites(bytes(data), group, elem)
    if not sites:
        return "noop"
    at, explicit = rng.choice(sites)
    if vr == "US":
        value_at = at + 8
        if value_at + 2 > len(data):
            return "noop"
        data[value_at : value_at + 2] = struct.pack("<H", rng.choice((*INTERESTING_16, 3, 4, 12, 32, 64)))
        return f"{name}=US@{at}"
    if vr == "IS" or vr == "DS":
        text = rng.choice(_BIG_NUMBERS)
    elif vr == "CS":
        text = rng.choice(_PHOTOMETRIC)
    else:
        text = rng.choice(_SYNTAXES)
    raw = text.encode()
    if len(raw) % 2:
        raw += b" " if vr != "UI" else b"\x00"
    if len(data) < at + 8:
        return "noop"
    if explicit:
        (old_len,) = struct.unpack("<H", bytes(data[at + 6 : at + 8]))
        if old_len > 1024:
            return "noop"
        data[at + 6 : at + 8] = struct.pack("<H", len(raw))
    else:
        (old_len,) = struct.unpack("<I", bytes(data[at + 4 : at + 8]))
        if old_len > 1024:
            return "noop"
        data[at + 4 : at + 8] = struct.pack("<I", len(raw))
    data[at + 8 : at + 8 + old_len] = raw
    return f"{name}={text}@{at}"


def vr_length(data: bytearray, rng: random.Random) -> str:
    """Corrupts the VR or the length field of an explicit-VR element."""
    candidates = []
    for _ in range(64):
        at = rng.randrange(max(1, len(data) - 12))
        if bytes(data[at + 4 : at + 6]) in _VRS[:10] or (
            data[at + 4 : at + 6].isalpha() and data[at + 4 : at + 6].isupper()
        ):
            candidates.append(at)
    if not candidates:
        return "noop"
    at = rng.choice(candidates)
    if rng.random() < 0.4:
        data[at + 4 : at + 6] = rng.choice(_VRS)
        return f"vr@{at}"
    if bytes(data[at + 4 : at + 6]) in _LONG_VRS:
        data[at + 8 : at + 12] = struct.pack("<I", rng.choice(INTERESTING_32))
    else:
        data[at + 6 : at + 8] = struct.pack("<H", rng.choice(INTERESTING_16))
    return f"length@{at}"


def preamble(data: bytearray, rng: random.Random) -> str:
    """Injects an executable / archive / HTML header into the 128-byte preamble."""
    if len(data) < 132 or bytes(data[128:132]) != b"DICM":
        return "noop"
    payload = rng.choice(_PREAMBLES)
    data[: len(payload)] = payload
    return f"preamble:{payload[:4]!r}"


def png_header(data: bytearray, rng: random.Random) -> str:
    """Rewrites PNG IHDR width/height/bit depth/colour type with a valid CRC."""
    if not data.startswith(b"\x89PNG") or len(data) < 33:
        return "noop"
    field = rng.choice(((16, ">I"), (20, ">I"), (24, ">B"), (25, ">B")))
    value = rng.choice((0, 1, 7, 16, 0xFFFF, 0x7FFFFFFF, 100000)) if field[1] == ">I" else rng.randrange(256)
    data[field[0] : field[0] + struct.calcsize(field[1])] = struct.pack(field[1], value)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return f"png_ihdr@{field[0]}={value}"


def nifti_header(data: bytearray, rng: random.Random) -> str:
    """Rewrites NIfTI-1 dim/datatype/bitpix/vox_offset/scl fields (on the uncompressed header)."""
    if len(data) < 348:
        return "noop"
    choice = rng.randrange(6)
    if choice == 0:
        at = 40 + 2 * rng.randrange(8)  # dim[0..7]
        data[at : at + 2] = struct.pack("<h", rng.choice((0, 1, 2, 4, 7, 8, -1, 32767, 4096)))
        return f"nifti_dim@{at}"
    if choice == 1:
        data[70:72] = struct.pack("<h", rng.choice((0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 2304, 1792, 999)))
        return "nifti_datatype"
    if choice == 2:
        data[72:74] = struct.pack("<h", rng.choice((0, 1, 8, 16, 32, 64, 7)))
        return "nifti_bitpix"
    if choice == 3:
        data[108:112] = struct.pack("<f", rng.choice((0.0, 352.0, 1e9, -1.0, float("nan"), 3.5)))
        return "nifti_vox_offset"
    if choice == 4:
        data[112:120] = struct.pack("<ff", rng.choice((0.0, float("inf"), float("nan"), 1e38)), 0.0)
        return "nifti_scl"
    at = 280 + 4 * rng.randrange(12)  # srow_x/y/z
    data[at : at + 4] = struct.pack("<f", rng.choice((0.0, float("nan"), 1e30, -1.0)))
    return f"nifti_srow@{at}"


_GENERIC: tuple[tuple[Callable[[bytearray, random.Random], str], int], ...] = (
    (bit_flip, 4),
    (interesting_value, 4),
    (truncate, 2),
    (duplicate_chunk, 2),
    (delete_chunk, 2),
    (header_field, 5),
    (vr_length, 3),
    (preamble, 1),
)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """Applies 1-3 seeded mutations; gzip members are mutated inside (then recompressed) most of the time.

    Returns:
        The mutated bytes and a short description of each mutation.
    """
    if data.startswith(b"\x1f\x8b") and rng.random() < 0.8:
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            inner = None
        if inner is not None:
            mutated, notes = mutate(inner, rng)
            return gzip.compress(mutated, mtime=0), ["inside-gzip", *notes]
    buf = bytearray(data)
    notes: list[str] = []
    ops = list(_GENERIC)
    if data.startswith(b"\x89PNG"):
        ops.append((png_header, 6))
    if len(data) >= 348 and data[344:348] in (b"n+1\x00", b"ni1\x00"):
        ops.append((nifti_header, 8))
    funcs = [f for f, _ in ops]
    weights = [w for _, w in ops]
    for _ in range(rng.randint(1, 3)):
        if not buf:
            break
        op = rng.choices(funcs, weights)[0]
        notes.append(op(buf, rng))
    return bytes(buf), notes
