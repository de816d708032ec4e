"""The secret salt behind pseudonymous UIDs and patient IDs.

It lives in ``<data_dir>/secret/deid_salt`` (32 random bytes, mode 0600), created on first use. The same
salt always maps the same original UID to the same pseudonym, so studies loaded at different times link
up; deleting the file breaks that link for good.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from zebra.errors import ConfigError

log = logging.getLogger(__name__)

SALT_BYTES = 32
MIN_SALT_BYTES = 16


def salt_path(data_dir: Path) -> Path:
    """Where the salt of ``data_dir`` lives."""
    return data_dir / "secret" / "deid_salt"


def load_or_create_salt(data_dir: Path | None = None) -> bytes:
    """Returns the de-identification salt, creating it (mode 0600) when missing.

    Args:
        data_dir: Zebra's data folder; the settings' ``data_dir`` when ``None``.

    Raises:
        ConfigError: When the salt file exists but is too short, or cannot be written.
    """
    if data_dir is None:
        from zebra.config import get_settings

        data_dir = get_settings().data_dir
    path = salt_path(Path(data_dir).expanduser())
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create(path)
        if path.stat().st_mode & 0o077:
            log.warning("de-identification salt %s was readable by others; restricting it to 0600", path)
            path.chmod(0o600)
        salt = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read or create the de-identification salt {path}: {exc.strerror}.",
            hint="Check that the data directory (ZEBRA_DATA_DIR) is writable.",
        ) from exc
    if len(salt) < MIN_SALT_BYTES:
        raise ConfigError(
            f"The de-identification salt {path} is only {len(salt)} bytes long.",
            hint="Restore it from a backup, or delete it to create a new one (pseudonyms will change).",
        )
    return salt


def _create(path: Path) -> None:
    """Writes a fresh salt to a private temporary file and links it into place.

    ``os.link`` fails when the target exists, so two processes starting at once agree on one salt and
    nobody ever reads a half-written file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(SALT_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            log.info("created a new de-identification salt in %s", path.parent)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
