"""``markdown:DIR`` and ``text:DIR``: one document per file (searched recursively).

The title is the first Markdown heading (``# ...``) for Markdown files, else the file name. A single file
may be given instead of a folder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from index_builder.documents import Document
from index_builder.errors import SourceError
from index_builder.sources.base import Source, register_source

log = logging.getLogger(__name__)

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


class _FolderSource(Source):
    suffixes: ClassVar[tuple[str, ...]] = ()
    options = {"kind": "document kind to record (default text)"}

    def files(self) -> list[Path]:
        assert self.path is not None
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise SourceError(
                f"Folder {self.path} not found.", hint=f"Check the path given to {self.kind}:DIR."
            )
        return sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in self.suffixes)

    def title_of(self, text: str, path: Path) -> str:
        return path.stem.replace("_", " ").replace("-", " ").strip() or path.name

    def documents(self) -> Iterator[Document]:
        assert self.path is not None
        root = self.path if self.path.is_dir() else self.path.parent
        files = self.files()
        if not files:
            log.warning("%s: no %s files under %s", self.kind, "/".join(self.suffixes), self.path)
        for path in files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").strip()
            except OSError as exc:
                raise SourceError(
                    f"Cannot read {path}: {exc}.", hint="Check the file's permissions."
                ) from exc
            if not text:
                continue
            rel = path.relative_to(root).as_posix()
            yield Document(
                doc_id=f"{self.name}:{rel}",
                source=self.name,
                kind=self.option("kind", "text"),
                title=self.title_of(text, path),
                text=text,
                meta={"path": rel},
            )


@register_source
class MarkdownSource(_FolderSource):
    """Markdown files, one document each (title = first heading): markdown:DIR."""

    kind = "markdown"
    suffixes = (".md", ".markdown")

    def title_of(self, text: str, path: Path) -> str:
        m = _HEADING.search(text)
        return m.group(1).strip() if m else super().title_of(text, path)


@register_source
class TextSource(_FolderSource):
    """Plain-text files, one document each (title = file name): text:DIR."""

    kind = "text"
    suffixes = (".txt", ".text")
