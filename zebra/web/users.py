"""User accounts: creation and the first administrator of a fresh installation."""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from store import Store, User
from store.repo import get_user_by_username, record_audit
from zebra.web.errors import BadRequestError
from zebra.web.passwords import hash_password

log = logging.getLogger(__name__)

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: Where a generated first-admin password is written (relative to the data directory).
INITIAL_PASSWORD_FILE = Path("secret") / "initial_admin_password"


def validate_username(username: str) -> str:
    """Returns ``username`` when it is 1-64 of ``A-Z a-z 0-9 . _ @ -`` (starting with a letter or digit).

    Raises:
        BadRequestError: Otherwise.
    """
    if not _USERNAME.match(username or ""):
        raise BadRequestError(
            "Invalid user name.",
            hint="Use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.",
        )
    return username


def create_user(store: Store, username: str, password: str, *, is_admin: bool = False) -> int:
    """Creates a user with an Argon2id password hash and returns its id.

    Raises:
        BadRequestError: For an invalid name, a weak password, or a name already taken.
    """
    validate_username(username)
    password_hash = hash_password(password)
    with store.session(immediate=True) as s:
        if get_user_by_username(s, username) is not None:
            raise BadRequestError(f"User {username!r} already exists.", hint="Pick another user name.")
        user = User(username=username, password_hash=password_hash, is_admin=is_admin)
        s.add(user)
        s.flush()
        record_audit(s, "user.create", target_type="user", target_id=user.id, details={"is_admin": is_admin})
        return user.id


def count_users(store: Store) -> int:
    """How many users exist."""
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(User)) or 0)


@dataclass(frozen=True)
class InitialAdmin:
    """The administrator created on a fresh installation.

    Attributes:
        username: Its user name.
        password: The generated password, or ``None`` when it came from the environment.
        password_file: Where the generated password was written, or ``None``.
    """

    username: str
    password: str | None
    password_file: Path | None


def ensure_initial_admin(
    store: Store, data_dir: Path, environ: dict[str, str] | None = None
) -> InitialAdmin | None:
    """Creates the first administrator when the database has no user at all.

    ``ZEBRA_ADMIN_USER`` and ``ZEBRA_ADMIN_PASSWORD`` name it when both are set. Otherwise an ``admin`` user
    gets a random password, written to ``<data_dir>/secret/initial_admin_password`` (mode 0600) and returned
    so that the caller shows it once. Never a hard-coded password.

    Returns:
        What was created, or ``None`` when users already exist.
    """
    env = os.environ if environ is None else environ
    if count_users(store) > 0:
        return None
    username = env.get("ZEBRA_ADMIN_USER") or "admin"
    password = env.get("ZEBRA_ADMIN_PASSWORD")
    if password:
        create_user(store, username, password, is_admin=True)
        log.info("created the first administrator from ZEBRA_ADMIN_USER/ZEBRA_ADMIN_PASSWORD")
        return InitialAdmin(username=username, password=None, password_file=None)
    password = secrets.token_urlsafe(18)
    create_user(store, username, password, is_admin=True)
    path = Path(data_dir) / INITIAL_PASSWORD_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    os.chmod(path, 0o600)
    log.info("created the first administrator %r with a generated password (see %s)", username, path)
    return InitialAdmin(username=username, password=password, password_file=path)
