"""Prints the runtime dependencies of pyproject.toml pinned to their declared lower bounds (pip constraints).

``name>=X`` becomes ``name==X``; an exact pin stays; a requirement without a lower bound is left out (pip picks
it freely). CI installs the built wheel with these constraints (``.ci/wheel_check.sh``), so a lower bound that
the code outgrew fails there instead of on a user's machine. Extras named on the command line are pinned too.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement


def pins(pyproject: Path, extras: list[str]) -> list[str]:
    """``name==lower`` for every dependency (and those of ``extras``) that declares a lower bound."""
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    out: list[str] = []
    for text in declared:
        req = Requirement(text)
        lower = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if lower:
            marker = f"; {req.marker}" if req.marker else ""
            out.append(f"{req.name}=={lower[0]}{marker}")
    return out


if __name__ == "__main__":
    print("\n".join(pins(Path(sys.argv[1]), sys.argv[2:])))
