"""Turning ranked candidates and table rows into :class:`Hit` and :class:`ImageHit` results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from retrieval.citations import chunk_citation, image_citation, parse_meta
from retrieval.ranking import Candidate
from retrieval.types import Hit, ImageHit, Scores


def text_hit(row: pd.Series, cand: Candidate, rank: int, query: str | None) -> Hit:
    """A :class:`Hit` from a chunk row (``chunks.parquet`` columns) and its ranking."""
    record = {col: _scalar(row[col]) for col in row.index}
    meta = parse_meta(record.get("meta"))
    return Hit(
        vector_id=int(cand.vid),
        doc_id=str(record.get("doc_id") or ""),
        source=str(record.get("source") or ""),
        kind=str(record.get("kind") or ""),
        title=str(record.get("title") or ""),
        diagnosis=_opt_str(record.get("diagnosis")),
        text=str(record.get("text") or ""),
        citation=chunk_citation(record, query, meta=meta),
        scores=_scores(cand, rank),
        modality=_opt_str(record.get("modality")),
        body_region=_opt_str(record.get("body_region")),
        meta=meta,
    )


def image_hit(row: pd.Series, cand: Candidate, rank: int) -> ImageHit:
    """An :class:`ImageHit` from an image row (``images.parquet`` columns) and its ranking."""
    record = {col: _scalar(row[col]) for col in row.index}
    meta = parse_meta(record.get("meta"))
    return ImageHit(
        vector_id=int(cand.vid),
        image_id=str(record.get("image_id") or ""),
        path=str(record.get("path") or ""),
        case_id=_opt_str(record.get("case_id")),
        caption=_opt_str(record.get("caption")),
        diagnosis=_opt_str(record.get("diagnosis")),
        modality=_opt_str(record.get("modality")),
        body_region=_opt_str(record.get("body_region")),
        source=str(record.get("source") or ""),
        citation=image_citation(record, meta=meta),
        scores=_scores(cand, rank),
        meta=meta,
    )


def _scores(cand: Candidate, rank: int) -> Scores:
    return Scores(
        fused=float(cand.fused),
        rank=rank,
        dense=cand.dense,
        bm25=cand.bm25,
        dense_rank=cand.dense_rank,
        bm25_rank=cand.bm25_rank,
        mmr=cand.mmr,
        caption=cand.caption,
    )


def _scalar(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return value
    return value


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
