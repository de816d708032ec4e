"""``images:PATH``: images for the image index, from a NOVA layout (with captions and diagnoses) or a plain
folder of image files (searched recursively; no captions)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from index_builder.documents import ImageItem
from index_builder.errors import SourceError
from index_builder.sources.base import Source, register_source
from index_builder.sources.nova import is_nova, nova_images

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@register_source
class ImageFolderSource(Source):
    """Images for the image index: images:PATH (NOVA layout or a plain image folder)."""

    kind = "images"

    def images(self) -> Iterator[ImageItem]:
        assert self.path is not None
        if not self.path.exists():
            raise SourceError(f"{self.path} does not exist.", hint="Give a NOVA data set or an image folder.")
        if is_nova(self.path):
            yield from nova_images(self.path, self.name)
            return
        if not self.path.is_dir():
            raise SourceError(
                f"{self.path} is not a folder.", hint="Give a NOVA data set or an image folder."
            )
        files = sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            log.warning("images: no image files under %s", self.path)
        for path in files:
            rel = path.relative_to(self.path).as_posix()
            yield ImageItem(
                image_id=f"{self.name}:{rel}", path=str(path), source=self.name, meta={"relpath": rel}
            )
