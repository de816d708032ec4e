"""``zebra user add|list``, ``zebra serve`` start-up (uvicorn stubbed) and ``zebra bench chat``."""

from __future__ import annotations

import json
import os
import stat

import pytest


@pytest.fixture
def cli(zebra_env):
    import zebra_cli
    import zebra_cli.web  # registers the commands (until it is in COMMAND_MODULES)

    return zebra_cli


def test_user_add_and_list(cli, zebra_env, monkeypatch, capsys, web):
    monkeypatch.setenv("ZEBRA_ADMIN_PASSWORD", web.PASSWORD)
    cli.main(["user", "add", "zed", "--admin"])
    assert "Created administrator 'zed'" in capsys.readouterr().out
    cli.main(["user", "list"])
    assert "zed\t(admin)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["user", "add", "zed"])
    assert info.value.code != 0 and "already exists" in capsys.readouterr().err
    monkeypatch.setenv("ZEBRA_ADMIN_PASSWORD", "short")
    with pytest.raises(SystemExit):
        cli.main(["user", "add", "amy"])
    assert "at least" in capsys.readouterr().err


def test_user_add_prompts_for_password(cli, monkeypatch, web):
    from typer.testing import CliRunner

    from zebra_cli.app import app

    monkeypatch.delenv("ZEBRA_ADMIN_PASSWORD", raising=False)
    result = CliRunner().invoke(app, ["user", "add", "pat"], input=f"{web.PASSWORD}\n{web.PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert web.PASSWORD not in result.output.replace("Password for pat", "")


def test_serve_creates_first_admin_once(cli, zebra_env, monkeypatch, capsys):
    import uvicorn

    import index_builder.background
    from index_builder.background import KbStatus

    started, builds = [], []
    monkeypatch.delenv("ZEBRA_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("ZEBRA_ADMIN_USER", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    # the background build is started (not run here: it would build the real default knowledge base)
    monkeypatch.setattr(
        index_builder.background,
        "start_background_build",
        lambda settings: builds.append(settings) or KbStatus(state="building", fraction=0.1, eta_s=600),
    )
    cli.main(["serve", "--port", "8765"])
    out = capsys.readouterr().out
    password = (zebra_env / "secret" / "initial_admin_password").read_text().strip()
    assert f"password: {password}" in out and "Zebra is running on http://127.0.0.1:8765" in out
    assert stat.S_IMODE(os.stat(zebra_env / "secret" / "initial_admin_password").st_mode) == 0o600
    assert started and started[0][1]["host"] == "127.0.0.1" and started[0][1]["port"] == 8765
    assert len(builds) == 1 and "Knowledge base: 10 %, about 10 min left." in out and "kb-build.log" in out
    cli.main(["serve", "--no-build-kb"])
    assert len(builds) == 1
    cli.main(["serve"])
    assert "password" not in capsys.readouterr().out  # printed once only
    cli.main(["serve", "--host", "0.0.0.0"])
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().out


def test_bench_refuses_remote_urls(cli, capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "chat", "--url", "http://example.org:8000", "--seconds", "1"])
    assert "this machine" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_chat_small(cli, capsys):
    cli.main(["bench", "chat", "--users", "2", "--seconds", "2", "--test-agent"])
    result = json.loads(capsys.readouterr().out)
    assert result["errors"] == 0, result
    assert result["questions"] >= 2 and result["answer_latency_s"]["p99"] is not None
    assert result["answer_latency_s"]["p50"] <= result["answer_latency_s"]["p99"]
    assert result["agent"] == "test"
