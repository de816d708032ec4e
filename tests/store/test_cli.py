"""``zebra db upgrade | current | check`` through :func:`zebra_cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zebra_cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_db_commands_with_url(zebra_env: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["db", "check", "--url", db_url], capsys)
    assert code == 2 and "no Zebra schema" in err and "zebra db upgrade" in err

    code, out, _ = _run(["db", "current", "--url", db_url], capsys)
    assert code == 0
    assert json.loads(out) | {"url": None} == {
        "url": None,
        "current": None,
        "head": "0001",
        "up_to_date": False,
    }

    code, out, _ = _run(["db", "upgrade", "--url", db_url], capsys)
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["to"] == "0001"

    code, out, _ = _run(["db", "check", "--url", db_url], capsys)
    assert code == 0 and "at revision 0001 (head)" in out
    code, out, _ = _run(["db", "current", "--url", db_url], capsys)
    assert json.loads(out)["up_to_date"] is True


def test_db_upgrade_defaults_to_settings(zebra_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["db", "upgrade"], capsys)
    assert code == 0
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload == {
        "url": f"sqlite:///{zebra_env / 'zebra.db'}",
        "from": None,
        "to": "0001",
        "changed": True,
    }
    assert (zebra_env / "zebra.db").is_file()


def test_db_unreachable_masks_password(zebra_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["db", "current", "--url", "postgresql://zebra:topsecret@127.0.0.1:1/x"], capsys)
    assert code == 2
    assert "Cannot reach database at postgresql+psycopg://zebra:***@127.0.0.1:1/x" in err
    assert "topsecret" not in out + err
