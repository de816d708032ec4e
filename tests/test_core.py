"""Settings, registry and CLI error handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from zebra.config import get_settings, load_settings
from zebra.errors import BackendNotFoundError, ConfigError
from zebra.registry import BackendSpec, Registry


def test_backend_spec_parses_scheme_and_argument() -> None:
    assert BackendSpec.parse("builtin") == BackendSpec("builtin", "")
    assert BackendSpec.parse("hf:/models/qwen") == BackendSpec("hf", "/models/qwen")
    spec = BackendSpec.parse("openai:http://127.0.0.1:8000/v1")
    assert spec.scheme == "openai" and spec.arg == "http://127.0.0.1:8000/v1"
    with pytest.raises(ConfigError):
        BackendSpec.parse("  ")


def test_registry_did_you_mean_lists_available() -> None:
    reg: Registry[str] = Registry("demo backend")

    @reg.register("builtin")
    def _builtin(arg: str) -> str:
        """The built-in one."""
        return f"builtin({arg})"

    assert reg.create("builtin") == "builtin()"
    assert reg.describe() == {"builtin": "The built-in one."}
    with pytest.raises(BackendNotFoundError) as err:
        reg.create("bultin:x")
    assert "Did you mean 'builtin'" in str(err.value)
    assert "Available: builtin" in str(err.value)


def test_settings_file_and_environment(
    zebra_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "custom.toml"
    cfg.write_text('log_level = "DEBUG"\n[intake]\nmax_files = 7\n[store]\nurl = "sqlite:///x.db"\n')
    monkeypatch.setenv("ZEBRA_CONFIG", str(cfg))
    monkeypatch.setenv("ZEBRA_INTAKE__MAX_FRAMES", "11")
    settings = load_settings()
    assert settings.log_level == "DEBUG"
    assert settings.intake.max_files == 7
    assert settings.intake.max_frames == 11  # environment
    assert settings.database_url == "sqlite:///x.db"
    assert settings.data_dir == zebra_env
    # the environment wins over the file
    monkeypatch.setenv("ZEBRA_INTAKE__MAX_FILES", "9")
    assert load_settings().intake.max_files == 9


def test_default_database_lives_in_data_dir(zebra_env: Path) -> None:
    settings = get_settings()
    assert settings.database_url == f"sqlite:///{zebra_env / 'zebra.db'}"
    assert settings.bundle_dir == zebra_env / "bundles" / "default"


def test_bad_settings_are_config_errors(
    zebra_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[intake\n")
    monkeypatch.setenv("ZEBRA_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()
    monkeypatch.setenv("ZEBRA_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()
    monkeypatch.delenv("ZEBRA_CONFIG")
    monkeypatch.setenv("ZEBRA_INTAKE__MAX_FILES", "many")
    with pytest.raises(ConfigError, match=r"intake\.max_files"):
        load_settings()


def test_cli_reports_typed_errors_without_traceback(
    zebra_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from zebra_cli import main

    monkeypatch.setenv("ZEBRA_INTAKE__MAX_FILES", "many")
    with pytest.raises(SystemExit) as exit_info:
        main(["version"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid settings") and "Traceback" not in err


def test_python_m_zebra_cli_runs_the_command() -> None:
    import subprocess
    import sys

    import zebra

    done = subprocess.run(
        [sys.executable, "-m", "zebra_cli", "version"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(zebra.__version__)


def test_ray_init_kwargs_pass_zebra_settings_and_never_join_by_accident(monkeypatch) -> None:
    from zebra.config import ray_init_kwargs

    monkeypatch.setenv("ZEBRA_DATA_DIR", "/data/zebra")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    joined = ray_init_kwargs("ray://head:10001", 8)
    assert joined["address"] == "ray://head:10001" and "num_cpus" not in joined  # a cluster has its own CPUs
    env = joined["runtime_env"]["env_vars"]
    assert env["ZEBRA_DATA_DIR"] == "/data/zebra" and "UNRELATED_SECRET" not in env
    assert joined["include_dashboard"] is False and joined["configure_logging"] is False
    local = ray_init_kwargs(None, 2, default_address="local")
    assert local["address"] == "local" and local["num_cpus"] == 2
    assert "address" not in ray_init_kwargs(None, None)  # Ray decides (joins a `ray start` of this machine)
