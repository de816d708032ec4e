"""``zebra setup``: prepares the data directory, the database and the default knowledge base.

Idempotent: what exists and verifies is kept, so ``make run`` is fast after the first time.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zebra.config import Settings

log = logging.getLogger(__name__)


def find_medpix(settings: Settings) -> Path | None:
    """The MedPix 2.0 folder to index, or ``None`` when there is none on this machine."""
    candidates: list[Path] = []
    if settings.knowledge.medpix_path is not None:
        candidates.append(Path(settings.knowledge.medpix_path).expanduser())
    if os.environ.get("ZEBRA_SHARED_DATA"):
        candidates.append(Path(os.environ["ZEBRA_SHARED_DATA"]) / "medpix-2.0")
    candidates.append(Path.cwd().parent / "shared" / "data" / "medpix-2.0")
    for path in candidates:
        if (path / "Case_topic.json").is_file():
            return path.resolve()
    return None


def default_sources(settings: Settings) -> list[str]:
    """Source specs of the default knowledge base.

    MedPix contributes only its train split's cases and images (plus every disease discussion), so that the
    dev split stays unseen by the default bundle and evaluations on it stay honest.
    """
    sources: list[str] = []
    if settings.knowledge.hpo:
        sources.append("hpo")
    medpix = find_medpix(settings)
    if medpix is not None:
        sources.append(f"medpix:{medpix}?split=train")
        sources.append(f"medpix-images:{medpix}?split=train")
    return sources


@dataclass
class SetupReport:
    """What ``zebra setup`` found and did."""

    data_dir: str
    database: str
    database_revision: str | None = None
    bundle: str = ""
    bundle_action: str = ""
    bundle_counts: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0


def stale_reason(manifest: dict) -> str | None:
    """Why a default bundle no longer matches the built-in models (``None`` when it does).

    The default bundle's image vectors come from the built-in image encoder; when a new Zebra version ships
    other encoder weights, old vectors would be compared with new query vectors, so ``zebra setup`` rebuilds.
    """
    from index_builder.embedders.image import BUILTIN_ARCH, builtin_checkpoint
    from index_builder.layout import sha256_file

    info = manifest.get("image_embedder") or {}
    if info.get("spec") != "builtin":
        return None
    ckpt = builtin_checkpoint()
    sha = sha256_file(ckpt) if ckpt else None
    if info.get("arch") != BUILTIN_ARCH or info.get("checkpoint_sha256") != sha:
        return (
            f"its images were embedded with {info.get('arch')} ({str(info.get('checkpoint_sha256'))[:12]}), "
            f"the built-in image encoder is now {BUILTIN_ARCH} ({str(sha)[:12]})"
        )
    return None


def bundle_needs_work(settings: Settings) -> str | None:
    """Why ``zebra setup`` would build or re-embed the default bundle (``None`` when it would keep it).

    Cheap (the manifest and the built-in encoder's checksum, not every file's): the server asks at start.
    """
    import json

    manifest_path = settings.bundle_dir / "manifest.json"
    if not manifest_path.is_file():
        return "no default bundle"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    return stale_reason(manifest)


def setup(
    settings: Settings,
    *,
    rebuild: bool = False,
    show_progress: Any = True,
    knowledge_base: bool = True,
) -> SetupReport:
    """Prepares everything the main job needs; rebuilds the default bundle only when missing or invalid.

    Args:
        settings: The settings.
        rebuild: Rebuild the default bundle even when it verifies.
        show_progress: Progress bars (``True``), none, or a ``(stage, done, total)`` callback
            (:class:`index_builder.background.StatusWriter`).
        knowledge_base: ``False`` prepares the data directory and the database only (``zebra setup
            --background`` then builds the knowledge base in another process).

    Raises:
        ZebraError: When the database cannot be reached or no knowledge source exists.
    """
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from index_builder.reembed import reembed_images
    from store import Store, mask_url
    from zebra.errors import IndexIntegrityError, NotFoundError, ZebraError

    t0 = time.perf_counter()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Store(settings.database_url)
    try:
        revision = db.upgrade()
    finally:
        db.dispose()
    report = SetupReport(
        data_dir=str(settings.data_dir), database=mask_url(settings.database_url), database_revision=revision
    )
    out = settings.bundle_dir
    report.bundle = str(out)
    if not knowledge_base:
        report.bundle_action = "left to the background build"
        report.seconds = round(time.perf_counter() - t0, 2)
        return report
    sources = default_sources(settings)
    report.sources = sources
    if not rebuild and (out / "manifest.json").is_file():
        try:
            bundle = Bundle.open(out)
            stale = stale_reason(bundle.manifest)
            if stale is None:
                report.bundle_action = "kept"
                report.bundle_counts = dict(bundle.manifest.get("counts", {}))
                report.seconds = round(time.perf_counter() - t0, 2)
                return report
            log.warning("default bundle is out of date, re-embedding its images: %s", stale)
            try:
                manifest = reembed_images(out, show_progress=show_progress)
            except ZebraError as exc:
                log.warning("re-embedding failed (%s); rebuilding the default bundle", exc.message)
            else:
                report.bundle_action = "re-embedded images"
                report.bundle_counts = dict(manifest.get("counts", {}))
                report.seconds = round(time.perf_counter() - t0, 2)
                return report
        except IndexIntegrityError as exc:
            log.warning("default bundle failed verification, rebuilding: %s", exc.message)
    if not sources:
        raise NotFoundError(
            "No knowledge source to build the default knowledge base from.",
            hint="Enable [knowledge] hpo = true or set [knowledge] medpix_path / ZEBRA_KNOWLEDGE__MEDPIX_PATH.",
        )
    log.info("building the default knowledge base at %s from %s", out, ", ".join(sources))
    manifest = build_bundle(out, sources, show_progress=show_progress)
    report.bundle_action = "built"
    report.bundle_counts = dict(manifest.get("counts", {}))
    report.seconds = round(time.perf_counter() - t0, 2)
    return report
