"""Which FAISS distribution is installed: ``faiss-cpu`` (extra ``cpu``) or ``faiss-gpu`` (extra ``gpu``).

Both ship the same module, ``faiss``; installed together, the one installed last silently replaces the other's
files. The extras make the choice explicit (``pip install 'zebra-dx[cpu]'`` or ``'zebra-dx[gpu]'``); this check
turns a missing or doubled FAISS into a clear error instead of an ImportError or a half-overwritten module.
"""

from __future__ import annotations

from importlib import metadata

from zebra.errors import ConfigError

#: FAISS distributions on PyPI that provide the module ``faiss``.
FAISS_DISTRIBUTIONS: tuple[str, ...] = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11")


def installed_faiss() -> list[str]:
    """``name==version`` of every FAISS distribution installed in this environment."""
    found = []
    for name in FAISS_DISTRIBUTIONS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def check_faiss_install() -> str:
    """The one installed FAISS distribution.

    Raises:
        ConfigError: When none or more than one is installed (a conda or source build of FAISS, which pip
            does not list, counts as none here but is accepted by :func:`require_faiss`).
    """
    found = installed_faiss()
    if len(found) > 1:
        raise ConfigError(
            f"More than one FAISS is installed ({', '.join(found)}); they share the module `faiss`.",
            hint="Keep one: pip uninstall the others, then reinstall 'zebra-dx[cpu]' or 'zebra-dx[gpu]'.",
        )
    if not found:
        raise ConfigError(
            "No FAISS distribution is installed.",
            hint="Install one: pip install 'zebra-dx[cpu]' (or 'zebra-dx[gpu]' on a CUDA machine).",
        )
    return found[0]


def require_faiss():
    """``import faiss``, with :func:`check_faiss_install`'s errors when the import fails or FAISS is doubled.

    Raises:
        ConfigError: No importable FAISS, or two distributions installed.
    """
    if len(installed_faiss()) > 1:
        check_faiss_install()
    try:
        import faiss
    except ImportError as exc:
        check_faiss_install()  # names the extra to install
        raise ConfigError(
            "FAISS is installed but cannot be imported: " + str(exc), hint="Reinstall it."
        ) from exc
    return faiss
