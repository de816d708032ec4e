"""Checks that a built wheel holds every file git tracks inside the product's packages (code, weights,
prompts, model configs, static files, migrations, vocabularies), and nothing from tests.

Usage: python .ci/wheel_contents.py WHEEL
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def packages() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return parser["importlinter"]["root_packages"].split()


def main(wheel: str) -> int:
    tracked = subprocess.run(
        ["git", "ls-files", "--", *packages()], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in tracked if f not in names]
    stray = sorted({n.split("/")[0] for n in names} & {"tests", "scripts", "docs"})
    if missing or stray:
        print(f"wheel_contents: {len(missing)} tracked files missing from the wheel: {missing[:20]}")
        print(f"wheel_contents: folders that must not ship: {stray}")
        return 1
    print(f"wheel_contents: all {len(tracked)} tracked product files are in {Path(wheel).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
