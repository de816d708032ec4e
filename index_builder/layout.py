"""Bundle folder layout, manifest constants and file checksums."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from index_builder.errors import REBUILD_HINT, BundleIntegrityError, BundleNotFoundError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks.parquet"
DOCUMENTS = "documents.parquet"
IMAGES = "images.parquet"
TEXT_INDEX = "text.faiss"
IMAGE_INDEX = "image.faiss"
#: Optional (index_builder.cross_modal): chunks and captions in the image embedder's text space.
CLIP_TEXT_INDEX = "clip_text.faiss"
CLIP_CAPTION_INDEX = "clip_captions.faiss"
BM25_DIR = "bm25"
BM25_IDS = "bm25/vector_ids.npy"

CHUNK_COLUMNS = (
    "vector_id",
    "doc_id",
    "source",
    "kind",
    "title",
    "diagnosis",
    "text",
    "char_start",
    "char_end",
    "chunk_index",
    "n_tokens",
    "modality",
    "body_region",
    "meta",
)
DOCUMENT_COLUMNS = (
    "doc_id",
    "source",
    "kind",
    "title",
    "diagnosis",
    "text",
    "modality",
    "body_region",
    "meta",
)
IMAGE_COLUMNS = (
    "vector_id",
    "image_id",
    "path",
    "case_id",
    "caption",
    "diagnosis",
    "modality",
    "body_region",
    "source",
    "meta",
)

_BUF = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BUF):
            digest.update(block)
    return digest.hexdigest()


def file_entries(root: Path) -> dict[str, dict[str, Any]]:
    """``{relative posix path: {"sha256", "size"}}`` for every file under ``root`` except the manifest."""
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        entries[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return entries


def read_manifest(root: Path) -> dict[str, Any]:
    """Reads and sanity-checks ``manifest.json``.

    Raises:
        BundleNotFoundError: When ``root`` holds no bundle.
        BundleIntegrityError: When the manifest is unreadable or from a newer format.
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        backups = sorted(root.parent.glob(f"{root.name}.old-*")) if root.parent.is_dir() else []
        hint = (
            f"A previous bundle was left at {backups[-1]} by an interrupted swap: rename it to {root}, or "
            "build again."
            if backups and not root.exists()
            else "Build one with `zebra index build OUT --source KIND:PATH`."
        )
        raise BundleNotFoundError(f"No index bundle at {root} (no {MANIFEST}).", hint=hint)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(f"{path} is not readable JSON: {exc}.", hint=REBUILD_HINT) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleIntegrityError(f"{path} lacks the 'files' table.", hint=REBUILD_HINT)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleIntegrityError(
            f"{path} has format_version {version!r}; this Zebra reads up to {FORMAT_VERSION}.",
            hint="Upgrade Zebra or " + REBUILD_HINT[0].lower() + REBUILD_HINT[1:],
        )
    return manifest


def verify_files(root: Path, manifest: dict[str, Any], *, checksums: bool = True) -> None:
    """Checks that every file listed in the manifest exists with its size (and SHA-256).

    Raises:
        BundleIntegrityError: Naming the first bad file.
    """
    root = Path(root)
    for rel, entry in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise BundleIntegrityError(f"Bundle file {path} is missing.", hint=REBUILD_HINT)
        size = path.stat().st_size
        if size != entry.get("size"):
            raise BundleIntegrityError(
                f"Bundle file {path} has {size} bytes, the manifest says {entry.get('size')} "
                "(truncated or altered).",
                hint=REBUILD_HINT,
            )
        if checksums and sha256_file(path) != entry.get("sha256"):
            raise BundleIntegrityError(
                f"Bundle file {path} does not match its SHA-256 in the manifest (altered or corrupt).",
                hint=REBUILD_HINT,
            )


def fsync_tree(root: Path) -> None:
    """fsyncs every file and folder under ``root`` (and ``root`` itself) so a rename publishes whole files."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """fsyncs a folder entry (best effort on platforms that refuse it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
