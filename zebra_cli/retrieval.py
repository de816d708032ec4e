"""CLI commands for retrieval: ``zebra search``, ``zebra eval retrieval``, ``zebra bench retrieval|scale``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from zebra_cli.app import app, bench_app, eval_app

log = logging.getLogger(__name__)


def _filters(
    modality: list[str] | None,
    body_region: list[str] | None,
    source: list[str] | None,
    kind: list[str] | None,
    has_diagnosis: bool | None,
) -> Any:
    from retrieval.filters import Filters

    return Filters(
        modality=tuple(modality or ()) or None,
        body_region=tuple(body_region or ()) or None,
        source=tuple(source or ()) or None,
        kind=tuple(kind or ()) or None,
        has_diagnosis=has_diagnosis,
    )


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _print_tables(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if payload.get("hits") is not None:
        table = Table(title=f"Text hits ({payload.get('text_search')})", show_lines=False)
        for col in ("#", "fused", "dense", "bm25", "kind", "title", "diagnosis", "quote"):
            table.add_column(col, overflow="fold")
        for hit in payload["hits"]:
            s = hit["scores"]
            table.add_row(
                str(s["rank"]),
                _fmt(s["fused"], 4),
                _fmt(s.get("dense")),
                _fmt(s.get("bm25"), 2),
                hit["kind"],
                _short(hit["title"], 40),
                _short(hit.get("diagnosis"), 30),
                _short(hit["citation"]["quote"], 80),
            )
        console.print(table)
    if payload.get("image_hits") is not None:
        table = Table(title=f"Image hits ({payload.get('image_search')})")
        for col in ("#", "score", "image", "diagnosis", "modality", "caption"):
            table.add_column(col, overflow="fold")
        for hit in payload["image_hits"]:
            table.add_row(
                str(hit["scores"]["rank"]),
                _fmt(hit["scores"]["fused"], 4),
                _short(hit["image_id"], 30),
                _short(hit.get("diagnosis"), 30),
                _short(hit.get("modality"), 16),
                _short(hit.get("caption"), 70),
            )
        console.print(table)
    if payload.get("diagnoses"):
        table = Table(title="Candidate diagnoses")
        for col in ("#", "score", "diagnosis", "hits", "evidence kinds", "first evidence"):
            table.add_column(col, overflow="fold")
        for cand in payload["diagnoses"]:
            first = cand["evidence"][0] if cand["evidence"] else {}
            table.add_row(
                str(cand["rank"]),
                _fmt(cand["score"]),
                _short(cand["label"], 40),
                str(cand["n_hits"]),
                ", ".join(cand["evidence_kinds"]),
                _short(f"{first.get('doc_id', '')}: {first.get('quote', '')}", 70),
            )
        console.print(table)


@app.command("search")
def search(
    bundle: Path = typer.Argument(..., help="Index bundle folder."),
    query: str | None = typer.Argument(None, help="Text query (optional when --image is given)."),
    image: Path | None = typer.Option(None, "--image", help="Query image (PNG/JPEG/DICOM)."),
    k: int = typer.Option(10, "--k", min=1, max=1000, help="Number of hits."),
    mode: str = typer.Option("hybrid", "--mode", help="Text search mode: hybrid, dense or bm25."),
    modality: list[str] | None = typer.Option(None, "--modality", help="Keep this modality (repeatable)."),
    body_region: list[str] | None = typer.Option(None, "--body-region", help="Keep this body region."),
    source: list[str] | None = typer.Option(None, "--source", help="Keep this source (repeatable)."),
    kind: list[str] | None = typer.Option(None, "--kind", help="Keep this document kind (repeatable)."),
    has_diagnosis: bool | None = typer.Option(
        None, "--has-diagnosis/--no-diagnosis", help="Keep rows with (or without) a diagnosis label."
    ),
    mmr: float | None = typer.Option(
        None, "--mmr", min=0.0, max=1.0, help="MMR lambda (1 = relevance only)."
    ),
    cross_modal: bool = typer.Option(
        False, "--cross-modal", help="Text query searches images, and the image searches text."
    ),
    diagnoses: bool = typer.Option(False, "--diagnoses", help="Also aggregate the text hits into diagnoses."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="SHA-256-check the bundle files."),
) -> None:
    """Search an index bundle by text and/or image; print hits with citations."""
    from retrieval.aggregate import aggregate_diagnoses
    from retrieval.errors import QueryError
    from retrieval.searcher import Searcher

    if not (query and query.strip()) and image is None:
        raise QueryError("Nothing to search for.", hint="Give a query text, --image PATH, or both.")
    filters = _filters(modality, body_region, source, kind, has_diagnosis)
    searcher = Searcher(bundle, verify=verify)
    payload: dict[str, Any] = {
        "bundle": str(bundle),
        "query": query,
        "image": str(image) if image else None,
        "mode": mode,
        "filters": filters.to_dict(),
        "hits": None,
        "image_hits": None,
    }
    text_hits = None
    if query and query.strip():
        if cross_modal:
            payload["image_search"] = "text->image"
            payload["image_hits"] = [
                h.to_dict() for h in searcher.search_text_to_image(query, k=k, filters=filters)
            ]
        else:
            payload["text_search"] = mode
            text_hits = searcher.search_text(query, k=k, mode=mode, filters=filters, mmr=mmr)
            payload["hits"] = [h.to_dict() for h in text_hits]
    if image is not None:
        if cross_modal:
            payload["text_search"] = "image->text"
            text_hits = searcher.search_image_to_text(image, k=k, filters=filters)
            payload["hits"] = [h.to_dict() for h in text_hits]
        else:
            payload["image_search"] = "image->image"
            payload["image_hits"] = [h.to_dict() for h in searcher.search_image(image, k=k, filters=filters)]
    if diagnoses and text_hits is not None:
        payload["diagnoses"] = [c.to_dict() for c in aggregate_diagnoses(text_hits, top_n=10)]
    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        _print_tables(payload)


@eval_app.command("retrieval")
def eval_retrieval(
    bundle: Path = typer.Option(..., "--bundle", help="Index bundle (train cases + discussions)."),
    medpix: Path = typer.Option(..., "--medpix", help="MedPix 2.0 folder (Case_topic.json, splits.json)."),
    split: str = typer.Option("dev", "--split", help="Split to evaluate (dev, train, all)."),
    k: int = typer.Option(5, "--k", min=1, max=100, help="Top-k rate reported beside top-1."),
    n_hits: int = typer.Option(30, "--hits", min=1, max=1000, help="Documents aggregated per query."),
    modes: str = typer.Option("dense,bm25,hybrid", "--modes", help="Comma-separated search modes."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N cases."),
    details: Path | None = typer.Option(None, "--details", help="Write per-case details to this JSONL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="SHA-256-check the bundle files."),
) -> None:
    """Top-1/top-k diagnosis hit rates on MedPix cases, queried with History + Findings only."""
    import time

    from retrieval.errors import QueryError
    from retrieval.evaluate import evaluate_retrieval, load_medpix_cases
    from retrieval.searcher import MODES, Searcher

    mode_list = [m.strip().lower() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in MODES]
    if bad or not mode_list:
        raise QueryError(f"Unknown mode(s) {', '.join(bad) or '(none)'}.", hint=f"Use: {', '.join(MODES)}.")
    cases = load_medpix_cases(medpix, split)
    if limit:
        cases = cases[:limit]
    searcher = Searcher(bundle, verify=verify)
    start = time.perf_counter()
    result = evaluate_retrieval(
        searcher, cases, modes=mode_list, k=k, n_hits=n_hits, details_path=details, progress=not as_json
    )
    result.update(
        {
            "bundle": str(bundle),
            "medpix": str(medpix),
            "split": split,
            "seconds": round(time.perf_counter() - start, 2),
            "details": str(details) if details else None,
        }
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MedPix {split}: {result['n_cases']} cases, {n_hits} hits aggregated")
    for col in ("mode", "top-1", f"top-{k}"):
        table.add_column(col)
    for mode, row in result["modes"].items():
        table.add_row(
            mode, f"{row['top1']:.3f} ({row['hits_top1']})", f"{row[f'top{k}']:.3f} ({row[f'hits_top{k}']})"
        )
    Console().print(table)


@bench_app.command("retrieval")
def bench_retrieval_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="Index bundle."),
    queries: int = typer.Option(200, "--queries", min=1, max=100_000, help="Number of sampled queries."),
    k: int = typer.Option(10, "--k", min=1, max=1000, help="Hits per query."),
    seed: int = typer.Option(0, "--seed", help="Query sampling seed."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="SHA-256-check the bundle files."),
) -> None:
    """Per-query latency (p50/p95 ms) of dense, BM25 and hybrid text search, as JSON."""
    import time

    from retrieval.bench import bench_retrieval, sample_queries
    from retrieval.searcher import Searcher

    start = time.perf_counter()
    searcher = Searcher(bundle, verify=verify)
    opened = time.perf_counter() - start
    result = bench_retrieval(searcher, sample_queries(searcher, queries, seed=seed), k=k)
    result.update({"bundle": str(bundle), "open_s": round(opened, 3), "seed": seed})
    typer.echo(json.dumps(result, indent=2))


@bench_app.command("scale")
def bench_scale_cmd(
    sizes: str = typer.Option("1000000,5000000,10000000", "--sizes", help="Corpus sizes (comma list)."),
    dim: int = typer.Option(384, "--dim", min=8, help="Dimension."),
    queries: int = typer.Option(500, "--queries", min=10, help="Queries (searched one at a time)."),
    memory_budget_gb: float = typer.Option(
        1.0, "--memory-budget-gb", min=0.01, help="Index memory budget: above it the on-disk factory."
    ),
    factory: str | None = typer.Option(
        None, "--factory", help="FAISS factory (default: by size and budget)."
    ),
    clusters: int = typer.Option(1000, "--clusters", min=1, help="Gaussian mixture components."),
    spread: float = typer.Option(1.0, "--spread", min=0.0, help="Noise norm relative to the centre."),
    threads: int = typer.Option(1, "--threads", min=1, help="OpenMP threads per single query."),
    seed: int = typer.Option(0, "--seed", help="Data seed."),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Where shards and bundles go (default: a temp folder)."
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the bundles."),
    max_build_s: float = typer.Option(2400, "--max-build-s", help="Skip sizes projected to build longer."),
) -> None:
    """Corpus-scale build and full hybrid query on SYNTHETIC clustered vectors and texts: build time, bytes on
    disk, resident memory, recall@10 vs exact, hybrid p50/p99 per size, as JSON (docs/index_builder.md)."""
    from retrieval.scale_bench import bench_scale
    from zebra.errors import ConfigError

    try:
        size_list = [int(float(x)) for x in sizes.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError("--sizes takes comma-separated integers.", hint="E.g. 1000000,5000000.") from exc
    report = bench_scale(
        sizes=size_list,
        dim=dim,
        queries=queries,
        memory_budget=int(memory_budget_gb * 2**30),
        factory=factory,
        clusters=clusters,
        spread=spread,
        seed=seed,
        workdir=workdir,
        keep=keep,
        threads=threads,
        max_build_s=max_build_s,
    )
    typer.echo(json.dumps(report, indent=2))
