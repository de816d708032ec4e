"""Password hashing with Argon2id (``argon2-cffi``); plain passwords are never stored or logged."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from zebra_web.errors import BadRequestError

#: Shortest password accepted when a user is created.
MIN_PASSWORD_LENGTH = 10
#: Longest password accepted (Argon2 takes any length; this bounds the work per request).
MAX_PASSWORD_LENGTH = 1024


@functools.lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the user name is unknown, so timing does not reveal which names exist.
    return _hasher().hash("zebra-dummy-password-for-timing")


def hash_password(password: str) -> str:
    """Argon2id hash of ``password`` (PHC string with salt and parameters).

    Raises:
        BadRequestError: When the password is shorter than :data:`MIN_PASSWORD_LENGTH` or too long.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequestError(
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters.",
            hint="Choose a longer password (a passphrase of several words works well).",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadRequestError(
            "The password is too long.", hint=f"Use at most {MAX_PASSWORD_LENGTH} characters."
        )
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; ``None`` (unknown user) costs as much and is ``False``."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        _hasher().verify(password_hash or _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
