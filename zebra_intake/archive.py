"""Safe extraction of a ``.zip`` holding a study: no zip-slip, no bombs, no links, bounded everything."""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from zebra.config import IntakeSettings
from zebra.errors import CorruptFileError, LimitExceededError, UnsafeFileError, UnsupportedFormatError
from zebra_intake.guard import MiB, safe_component

#: Members smaller than this are not held to the compression-ratio limit (tiny files compress wildly).
_RATIO_FLOOR = 1 * MiB
_CHUNK = 1 << 20
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def _member_parts(info: zipfile.ZipInfo) -> list[str]:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeFileError(
            "The zip holds a member with an absolute path.", hint="Refusing it (zip-slip); re-create the zip."
        )
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if not all(safe_component(p) for p in parts):
        raise UnsafeFileError(
            "The zip holds a member whose path leaves the archive ('..').",
            hint="Refusing it (zip-slip); re-create the zip without such entries.",
        )
    return parts


def _check_listing(infos: list[zipfile.ZipInfo], settings: IntakeSettings) -> list[zipfile.ZipInfo]:
    files = [i for i in infos if not i.is_dir()]
    if len(files) > settings.max_files:
        raise LimitExceededError(
            f"The zip holds {len(files)} files; the limit is {settings.max_files}.",
            hint="Split the archive, or raise intake.max_files (ZEBRA_INTAKE__MAX_FILES).",
        )
    total = 0
    for info in files:
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeFileError(
                "The zip holds a symbolic link.", hint="Refusing it; re-create the zip with plain files only."
            )
        if info.flag_bits & 0x1:
            raise UnsupportedFormatError(
                "The zip is encrypted.", hint="Extract it yourself and pass the folder."
            )
        if info.file_size > settings.max_file_bytes:
            raise LimitExceededError(
                f"A zip member is {info.file_size / MiB:.0f} MiB; the limit per file is "
                f"{settings.max_file_bytes / MiB:.0f} MiB.",
                hint="Raise intake.max_file_bytes (ZEBRA_INTAKE__MAX_FILE_BYTES) if the file is trusted.",
            )
        if info.file_size > _RATIO_FLOOR and info.file_size > settings.max_zip_ratio * max(
            1, info.compress_size
        ):
            raise UnsafeFileError(
                f"A zip member expands {info.file_size // max(1, info.compress_size)} times "
                f"(limit {settings.max_zip_ratio}): a decompression bomb.",
                hint="Refusing it; raise intake.max_zip_ratio only for trusted archives.",
            )
        total += info.file_size
    if total > settings.max_total_bytes:
        raise LimitExceededError(
            f"The zip expands to {total / MiB:.0f} MiB; the limit is {settings.max_total_bytes / MiB:.0f} MiB.",
            hint="Raise intake.max_total_bytes (ZEBRA_INTAKE__MAX_TOTAL_BYTES) if the archive is trusted.",
        )
    return files


def _directory_counts(path: Path) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end records, read before ``zipfile`` parses anything."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        tail_len = min(size, 65536 + 22)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            return None  # zipfile reports the archive as damaged
        entries, cd_size = struct.unpack_from("<HI", tail, at + 10)
        if (
            (entries == 0xFFFF or cd_size == 0xFFFFFFFF)
            and at >= 20
            and tail[at - 20 : at - 16] == b"PK\x06\x07"
        ):
            (offset,) = struct.unpack_from("<Q", tail, at - 12)
            if offset + 56 <= size:
                fh.seek(offset)
                record = fh.read(56)
                if record[:4] == b"PK\x06\x06":
                    entries, cd_size = struct.unpack_from("<QQ", record, 32)
        return entries, cd_size


def _precheck(path: Path, settings: IntakeSettings) -> None:
    counts = _directory_counts(path)
    if counts is None:
        return
    entries, cd_size = counts
    # A central directory entry is 46 bytes plus name/extra/comment; 4 KiB each is very generous.
    if entries > 2 * settings.max_files + 16 or cd_size > (2 * settings.max_files + 16) * 4096:
        raise LimitExceededError(
            f"The zip lists {entries} entries; the limit is {settings.max_files} files.",
            hint="Split the archive, or raise intake.max_files (ZEBRA_INTAKE__MAX_FILES).",
        )


def extract_zip(path: Path, dest: Path, settings: IntakeSettings) -> int:
    """Extracts ``path`` into the empty folder ``dest`` after checking every member.

    Sizes declared in the zip directory are checked first, then enforced again while inflating (a lying
    directory cannot get more than it declared out of the archive).

    Returns:
        The number of files extracted.

    Raises:
        UnsafeFileError: Zip-slip paths, links, bombs.
        LimitExceededError: Too many files or too many bytes.
        CorruptFileError: A damaged archive.
        UnsupportedFormatError: An encrypted archive.
    """
    try:
        _precheck(path, settings)
        with zipfile.ZipFile(path) as archive:
            members = _check_listing(archive.infolist(), settings)
            written = 0
            seen: set[str] = set()
            for info in members:
                parts = _member_parts(info)
                if not parts:
                    continue
                key = "/".join(parts).lower()
                if key in seen:
                    continue  # duplicate names: the first wins, a later one cannot overwrite it
                seen.add(key)
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                remaining = info.file_size
                with archive.open(info) as src, target.open("xb") as out:
                    while True:
                        chunk = src.read(min(_CHUNK, remaining + 1))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                        if remaining < 0:
                            raise UnsafeFileError(
                                "A zip member inflates to more than its declared size.",
                                hint="The archive is damaged or hostile; re-create it.",
                            )
                        out.write(chunk)
                written += 1
            return written
    except (UnsafeFileError, LimitExceededError, UnsupportedFormatError):
        raise
    except NotImplementedError as exc:
        raise UnsupportedFormatError(
            "The zip uses a compression method Python cannot read.",
            hint="Re-create it with the standard 'deflate' method.",
        ) from exc
    except RuntimeError as exc:  # zipfile raises RuntimeError for encrypted members
        raise UnsupportedFormatError(
            "The zip could not be read (encrypted?).", hint="Extract it yourself and pass the folder."
        ) from exc
    except _ZIP_ERRORS as exc:
        raise CorruptFileError(
            f"{path.name} is not a readable zip archive ({type(exc).__name__}).",
            hint="The archive is damaged or truncated; re-create it.",
        ) from exc
