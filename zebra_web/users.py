"""User accounts: creation, the first administrator, passwords, disabling, revoking sessions, deletion."""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from store import AuthToken, Store, User, utcnow
from store.repo import get_user_by_username, record_audit
from zebra_web.auth import revoke_user_tokens
from zebra_web.errors import BadRequestError, ResourceNotFoundError
from zebra_web.passwords import hash_password, verify_password

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


@dataclass(frozen=True)
class UserSummary:
    """A user as administrators see it.

    Attributes:
        id: User id.
        username: User name.
        is_admin: Whether the user manages users.
        is_active: Whether the user may sign in.
        sessions: Sign-in sessions not yet expired.
    """

    id: int
    username: str
    is_admin: bool
    is_active: bool
    sessions: int


def _user(s: Any, username: str) -> User:
    user = get_user_by_username(s, username)
    if user is None:
        raise ResourceNotFoundError(f"No user {username!r}.", hint="List users with `zebra user list`.")
    return user


def list_users(store: Store) -> list[UserSummary]:
    """Every user, by id, with their live sign-in sessions."""
    now = utcnow()
    with store.session() as s:
        live = (
            select(AuthToken.user_id, func.count().label("n"))
            .where(AuthToken.expires_at > now)
            .group_by(AuthToken.user_id)
            .subquery()
        )
        rows = s.execute(select(User, live.c.n).outerjoin(live, live.c.user_id == User.id).order_by(User.id))
        return [
            UserSummary(u.id, u.username, bool(u.is_admin), bool(u.is_active), int(n or 0)) for u, n in rows
        ]


def set_password(
    store: Store,
    username: str,
    password: str,
    *,
    actor_id: int | None = None,
    keep_token_id: int | None = None,
    data_dir: Path | None = None,
) -> int:
    """Sets a user's password and signs them out everywhere (but ``keep_token_id``); returns the user id.

    With ``data_dir``, the generated first-administrator password file is removed when it held this user's
    old password (a stale secret left on disk otherwise).

    Raises:
        ResourceNotFoundError: No such user.
        BadRequestError: A password that is too short or too long.
    """
    password_hash = hash_password(password)
    with store.session(immediate=True) as s:
        user = _user(s, username)
        old_hash = user.password_hash
        user.password_hash = password_hash
        user_id = user.id
        record_audit(s, "user.password", user_id=actor_id, target_type="user", target_id=user_id)
    if data_dir is not None:
        _drop_stale_initial_password(Path(data_dir), old_hash)
    revoked = revoke_user_tokens(store, user_id, keep_token_id=keep_token_id)
    log.info("password of user %s changed; %d sessions revoked", user_id, revoked)
    return user_id


def _drop_stale_initial_password(data_dir: Path, old_hash: str) -> None:
    path = data_dir / INITIAL_PASSWORD_FILE
    try:
        if path.is_file() and verify_password(old_hash, path.read_text().strip()):
            path.unlink()
            log.info("removed %s: it held a password that was just changed", path)
    except OSError as exc:
        log.warning("could not remove the stale initial password file (%s)", type(exc).__name__)


def _check_not_last_admin(s: Any, user: User) -> None:
    if not user.is_admin:
        return
    admins = s.scalar(
        select(func.count()).select_from(User).where(User.is_admin.is_(True), User.is_active.is_(True))
    )
    if int(admins or 0) <= 1 and user.is_active:
        raise BadRequestError(
            f"{user.username!r} is the last active administrator.",
            hint="Make another administrator first (zebra user add NAME --admin).",
        )


def set_active(store: Store, username: str, active: bool, *, actor_id: int | None = None) -> int:
    """Enables or disables a user; disabling also signs them out everywhere. Returns the user id.

    Raises:
        ResourceNotFoundError: No such user.
        BadRequestError: Disabling the last active administrator.
    """
    with store.session(immediate=True) as s:
        user = _user(s, username)
        if not active:
            _check_not_last_admin(s, user)
        user.is_active = active
        user_id = user.id
        record_audit(
            s,
            "user.enable" if active else "user.disable",
            user_id=actor_id,
            target_type="user",
            target_id=user_id,
        )
    if not active:
        revoke_user_tokens(store, user_id)
    return user_id


def revoke_sessions(store: Store, username: str, *, actor_id: int | None = None) -> int:
    """Signs a user out everywhere; returns how many sessions were revoked.

    Raises:
        ResourceNotFoundError: No such user.
    """
    with store.session(immediate=True) as s:
        user_id = _user(s, username).id
        record_audit(s, "user.revoke", user_id=actor_id, target_type="user", target_id=user_id)
    return revoke_user_tokens(store, user_id)


def delete_user(
    store: Store, data_dir: Path, username: str, *, actor_id: int | None = None, overlays: Any = None
) -> int:
    """Deletes a user with their studies (files too), chat sessions and sign-in sessions; returns the id.

    Raises:
        ResourceNotFoundError: No such user.
        BadRequestError: The last active administrator.
    """
    from zebra_web.deletion import delete_user_studies
    from zebra_web.overlays import OverlayStore

    overlays = overlays or OverlayStore(Path(data_dir) / "web")
    with store.session() as s:
        user = _user(s, username)
        _check_not_last_admin(s, user)
        user_id = user.id
    studies = delete_user_studies(store, data_dir, overlays, user_id, actor_id=actor_id)
    with store.session(immediate=True) as s:
        user = s.get(User, user_id)
        if user is not None:
            s.delete(user)
        record_audit(
            s,
            "user.delete",
            user_id=actor_id,
            target_type="user",
            target_id=user_id,
            details={"studies": studies},
        )
    log.info("deleted user %s and %d studies", user_id, studies)
    return user_id
