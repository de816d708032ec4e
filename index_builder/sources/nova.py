"""``nova:PATH``: a NOVA-layout data set (read with :func:`zebra_datasets.nova.read_nova`) as text.

Per image with a caption, a ``caption`` document; per case, a ``case_report`` document made of the clinical
history, the captions of its images and the final diagnosis (``diagnosis = final_diagnosis``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index_builder.documents import Document, ImageItem
from index_builder.errors import SourceError
from index_builder.sources.base import Source, register_source

log = logging.getLogger(__name__)


def read_dataset(path: Path) -> Any:
    """The :class:`~zebra_datasets.nova.NovaDataset` at ``path`` (errors are already typed)."""
    from zebra_datasets.nova import read_nova

    return read_nova(path)


def is_nova(path: Path) -> bool:
    """Whether ``path`` looks like a NOVA data set (root, ``data/`` folder or parquet file)."""
    if path.is_file():
        return path.suffix == ".parquet"
    return (path / "data" / "nova-v1.parquet").is_file() or (path / "nova-v1.parquet").is_file()


def _meta_str(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    text = str(value).strip() if value is not None else ""
    return text or None


@register_source
class NovaSource(Source):
    """NOVA-layout captions and cases as text: nova:PATH."""

    kind = "nova"
    options = {"parts": "comma list of captions, cases (default both)"}

    def documents(self) -> Iterator[Document]:
        assert self.path is not None
        parts = {p.strip() for p in self.option("parts", "captions,cases").split(",") if p.strip()}
        if not parts or parts - {"captions", "cases"}:
            raise SourceError(f"Unknown NOVA parts {sorted(parts)}.", hint="Use parts=captions,cases.")
        dataset = read_dataset(self.path)
        for case_id, records in dataset.by_case().items():
            first = records[0]
            diagnosis = first.final_diagnosis or None
            modality = _meta_str(first.meta, "modality")
            region = _meta_str(first.meta, "body_region")
            synthetic = any(r.is_synthetic for r in records)
            if "captions" in parts:
                for r in records:
                    if not r.caption_text.strip():
                        continue
                    yield Document(
                        doc_id=f"{self.name}:caption/{case_id}/{r.filename}",
                        source=self.name,
                        kind="caption",
                        title=f"{case_id} {r.filename}",
                        text=r.caption_text.strip(),
                        diagnosis=r.final_diagnosis or diagnosis,
                        modality=_meta_str(r.meta, "modality") or modality,
                        body_region=_meta_str(r.meta, "body_region") or region,
                        meta={
                            "case_id": case_id,
                            "scan_id": r.scan_id,
                            "filename": r.filename,
                            "synthetic": synthetic,
                        },
                    )
            if "cases" in parts:
                lines = []
                if first.clinical_history.strip():
                    lines.append(f"Clinical history: {first.clinical_history.strip()}")
                captions = list(
                    dict.fromkeys(r.caption_text.strip() for r in records if r.caption_text.strip())
                )
                if captions:
                    lines.append("Findings: " + "\n".join(captions))
                if diagnosis:
                    lines.append(f"Final diagnosis: {diagnosis}")
                if not lines:
                    continue
                yield Document(
                    doc_id=f"{self.name}:case/{case_id}",
                    source=self.name,
                    kind="case_report",
                    title=f"Case {case_id}" + (f": {diagnosis}" if diagnosis else ""),
                    text="\n".join(lines),
                    diagnosis=diagnosis,
                    modality=modality,
                    body_region=region,
                    meta={"case_id": case_id, "n_images": len(records), "synthetic": synthetic},
                )

    def images(self) -> Iterator[ImageItem]:
        """The data set's images (used by ``images:PATH`` on a NOVA layout)."""
        assert self.path is not None
        yield from nova_images(self.path, self.name)


def nova_images(path: Path, source: str) -> Iterator[ImageItem]:
    """One :class:`ImageItem` per NOVA row whose image can be found."""
    from zebra.errors import DatasetError

    dataset = read_dataset(path)
    missing = 0
    for r in dataset:
        try:
            image_path = dataset.resolve_image(r)
        except DatasetError:
            missing += 1
            continue
        yield ImageItem(
            image_id=f"{source}:{r.case_id}/{r.filename}",
            path=str(image_path),
            source=source,
            case_id=r.case_id,
            caption=r.caption_text.strip() or None,
            diagnosis=r.final_diagnosis or None,
            modality=_meta_str(r.meta, "modality"),
            body_region=_meta_str(r.meta, "body_region"),
            meta={
                "scan_id": r.scan_id,
                "filename": r.filename,
                "n_boxes": len(r.gold_boxes),
                "synthetic": r.is_synthetic,
            },
        )
    if missing:
        log.warning("%s: %d NOVA images not found and skipped", path, missing)
