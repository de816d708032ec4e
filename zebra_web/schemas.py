"""Request and response bodies of the JSON API (they document themselves in ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error: what went wrong and what to do."""

    error: str
    hint: str | None = None


class LoginRequest(BaseModel):
    """Sign-in. ``bearer=true`` returns a token for API clients instead of setting cookies."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    bearer: bool = False


class UserInfo(BaseModel):
    """The signed-in user."""

    id: int
    username: str
    is_admin: bool


class LoginResponse(BaseModel):
    """Result of a sign-in: the CSRF token to send in ``X-CSRF-Token`` (cookie sessions) or the bearer token."""

    user: UserInfo
    expires_at: str
    csrf_token: str | None = None
    token: str | None = None
    token_type: str | None = None


class MeResponse(UserInfo):
    """The signed-in user and how the request was authenticated."""

    auth: str
    expires_at: str


class NewUserRequest(BaseModel):
    """A user created by an administrator."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    is_admin: bool = False


class NewSessionRequest(BaseModel):
    """A chat session, optionally about one of your studies and a prior."""

    title: str | None = Field(default=None, max_length=200)
    study_id: int | None = None
    prior_study_id: int | None = None


class UpdateSessionRequest(BaseModel):
    """Fields to change; absent fields stay."""

    title: str | None = Field(default=None, max_length=200)
    study_id: int | None = None
    prior_study_id: int | None = None


class QuestionRequest(BaseModel):
    """A question in a session; the answer streams back as Server-Sent Events."""

    question: str = Field(min_length=1, max_length=4000)
    image_index: int | None = Field(
        default=None, ge=0, description="The image on screen (sent to the agent first)."
    )
    history: str | None = Field(default=None, max_length=4000, description="Clinical history, free text.")
    study_id: int | None = Field(
        default=None,
        description="The study the question is about; links the session to it (later questions keep using it).",
    )
    prior_study_id: int | None = Field(
        default=None, description="The prior study to compare with; links the session to it like `study_id`."
    )


JSONDict = dict[str, Any]


class AccountInfo(UserInfo):
    """A user as administrators see it."""

    is_active: bool
    sessions: int = Field(description="Sign-in sessions not yet expired.")


class UpdateUserRequest(BaseModel):
    """What an administrator changes about a user; absent fields stay."""

    is_active: bool | None = Field(default=None, description="false disables the user and signs them out.")
    password: str | None = Field(
        default=None, min_length=1, max_length=1024, description="A new password; signs them out everywhere."
    )


class ChangePasswordRequest(BaseModel):
    """Your own new password; the current one is checked first."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class RevokedResponse(BaseModel):
    """How many sign-in sessions were ended."""

    revoked: int


class StorageResponse(BaseModel):
    """Your stored studies' size and your quota (``quota_bytes`` 0: none)."""

    used_bytes: int
    quota_bytes: int


class PacsOpenRequest(BaseModel):
    """A study to open from the operator's PACS: exactly one of ``accession`` and ``study_uid`` (exact match).

    There is no field for a server: studies come from the server the administrator configured only.
    """

    model_config = ConfigDict(extra="forbid")

    accession: str | None = Field(
        default=None, max_length=64, description="Accession number: up to 16 characters, no wildcards."
    )
    study_uid: str | None = Field(
        default=None, max_length=128, description="StudyInstanceUID: up to 64 digits and dots."
    )
    role: str = Field(default="current", max_length=16, description="current or prior, as for uploads.")
    session_id: str | None = Field(
        default=None, max_length=64, description="Attach to this chat session (one of yours)."
    )


class PacsStatus(BaseModel):
    """Whether this server can open studies from a PACS (the administrator configured ``[dicomweb]``)."""

    configured: bool
