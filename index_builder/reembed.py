"""Re-embedding a bundle's images with a new image encoder, keeping its text index.

When Zebra ships new built-in image-encoder weights, a bundle's image vectors (and its precomputed cross-modal
vectors, which come from the same CLIP model) no longer match the query vectors. The text side (documents,
chunks, text index, BM25) does not depend on the image encoder, and embedding the text is most of a build's
time (17 of 18 minutes for the default bundle), so only the image side is recomputed here.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from index_builder import faiss_factory
from index_builder.atomic import BundleWriter, bundle_lock, recover
from index_builder.build import (
    Manifest,
    Progress,
    describe_image_embedder,
    load_parts,
    progress_bar,
    refresh_manifest,
    write_parts,
)
from index_builder.cross_modal import write_cross_modal
from index_builder.documents import ImageItem
from index_builder.embedders import create_image_embedder
from index_builder.errors import SourceError
from index_builder.pipeline import embed_images

log = logging.getLogger(__name__)


class ImagesUnavailableError(SourceError):
    """Some indexed image files can no longer be read, so the images cannot be re-embedded in place."""


def _items(images: Any) -> list[ImageItem]:
    items = []
    for row in images.to_pylist():
        meta = json.loads(row.get("meta") or "{}")
        items.append(
            ImageItem(
                image_id=row["image_id"],
                path=row["path"],
                source=row["source"],
                case_id=row.get("case_id"),
                caption=row.get("caption"),
                diagnosis=row.get("diagnosis"),
                modality=row.get("modality"),
                body_region=row.get("body_region"),
                meta=meta if isinstance(meta, dict) else {},
            )
        )
    return items


def reembed_images(
    path: str | Path, *, image_embedder: str | None = None, show_progress: Progress = False
) -> Manifest:
    """Re-embeds every image of the bundle at ``path`` (same ids, same FAISS factory) and its cross-modal
    vectors with ``image_embedder`` (default: the spec the bundle records), atomically.

    Args:
        path: Bundle folder.
        image_embedder: Image embedder spec; ``None`` re-creates the bundle's own spec (e.g. ``builtin``,
            which then loads the currently shipped weights).
        show_progress: Show a progress bar.

    Returns:
        The new manifest.

    Raises:
        BundleNotFoundError / IndexIntegrityError: No (valid) bundle at ``path``.
        SourceError: The bundle has no image index.
        ImagesUnavailableError: An indexed image file is missing or unreadable (rebuild from the sources
            instead); the bundle is left as it was.
    """
    from index_builder.bundle import Bundle

    t0 = time.perf_counter()
    out = Path(path).expanduser().resolve()
    with bundle_lock(out):
        recover(out)
        bundle = Bundle.open(out)
        manifest = dict(bundle.manifest)
        if not manifest.get("image_index"):
            raise SourceError(
                f"The bundle at {out} has no images to re-embed.",
                hint="Add images with `zebra index add` or rebuild it with an image source.",
            )
        spec = image_embedder or (manifest.get("image_embedder") or {}).get("spec") or "builtin"
        parts = load_parts(bundle)
        items = _items(parts.images)
        iemb = create_image_embedder(spec)
        with progress_bar(len(items), "re-embedding images", show_progress) as bar:
            kept, vectors, skipped = embed_images(items, iemb, progress=bar)
        if skipped:
            raise ImagesUnavailableError(
                f"{skipped} of {len(items)} indexed images could not be read (moved or deleted?).",
                hint="Rebuild the bundle from its sources: `zebra index build` (or `zebra setup --rebuild`).",
            )
        ids = np.asarray(parts.images.column("vector_id").to_pylist(), dtype=np.int64)
        factory = manifest["image_index"]["factory"]
        parts.image_index = faiss_factory.build_index(vectors, ids, factory)
        block = describe_image_embedder(iemb, spec)
        with BundleWriter(out) as writer:
            manifest["bm25"] = write_parts(writer, parts)
            manifest["image_embedder"] = block
            manifest["cross_modal"] = write_cross_modal(
                writer, parts.chunks, parts.images, block, lambda: iemb
            )
            skipped_before = int((manifest.get("counts") or {}).get("images_skipped", 0))
            refresh_manifest(manifest, parts, skipped_before)
            manifest["reembedded"] = {
                "at": manifest["updated_at"],
                "images": len(kept),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            manifest = writer.publish(manifest)
    log.info("re-embedded %d images of %s in %.1f s", len(kept), out, time.perf_counter() - t0)
    return manifest
