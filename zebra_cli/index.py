"""``zebra index ...`` (build, add, delete, info, sources) and ``zebra bench ingest|ann``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from zebra_cli.app import bench_app, index_app

log = logging.getLogger(__name__)

SOURCE_HELP = (
    "KIND:PATH[?key=value&...], repeatable. Kinds: medpix, medpix-images, hpo, nova, images, jsonl, csv, "
    "markdown, text (see `zebra index sources`). Quote specs that contain '?' or '&'."
)


def _store(enabled: bool) -> Any:
    """The configured store when it is reachable and migrated, else ``None`` with a warning."""
    if not enabled:
        return None
    from zebra.errors import ZebraError

    try:
        from store import Store

        store = Store.from_settings()
        store.check()
        return store
    except ZebraError as exc:
        log.warning("not registering documents in the database: %s (%s)", exc.message, exc.hint or "")
        return None


def _progress_default() -> bool:
    return sys.stderr.isatty()


def _summary(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    keys = ("counts", "text_embedder", "image_embedder", "text_index", "image_index", "sources", "build")
    return {"bundle": str(out), **{k: manifest.get(k) for k in keys if k in manifest}}


@index_app.command("build")
def build_cmd(
    out: Path = typer.Argument(..., help="Bundle folder to create or replace (atomically)."),
    source: list[str] = typer.Option(..., "--source", "-s", help=SOURCE_HELP),
    text_embedder: str = typer.Option("builtin", help="Text embedder spec: builtin, st:/path, hf:/path."),
    image_embedder: str = typer.Option("builtin", help="Image embedder spec: builtin, openclip:ARCH@/ckpt."),
    factory: str | None = typer.Option(None, help="FAISS factory for the text index (default: by size)."),
    image_factory: str | None = typer.Option(
        None, help="FAISS factory for the image index (default: by size)."
    ),
    gpu: bool = typer.Option(False, "--gpu", help="Build Flat/IVF indexes on GPU (needs the gpu extra)."),
    split: str | None = typer.Option(None, help="train, dev or all for sources with splits (medpix)."),
    batch_size: int = typer.Option(64, min=1, help="Encoder batch size."),
    chunk_tokens: int = typer.Option(200, min=8, help="Maximum tokens per chunk."),
    chunk_overlap: int = typer.Option(40, min=0, help="Overlap between consecutive chunks, in tokens."),
    use_store: bool = typer.Option(True, "--store/--no-store", help="Register documents in the database."),
    progress: bool = typer.Option(
        _progress_default(), "--progress/--no-progress", help="Show progress bars."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local, or ray: embed chunks in shards as Ray tasks, merged into the index."
    ),
    memory_budget_gb: float | None = typer.Option(
        None,
        "--memory-budget-gb",
        min=0.01,
        help="GiB the text index may hold in memory; above it the index is on disk, memory-mapped at search.",
    ),
    shard_size: int = typer.Option(20_000, min=100, help="Chunks per shard (one Ray task each)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address (auto: the running cluster; default: a local Ray)."
    ),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", min=1, help="CPUs of a local Ray."),
) -> None:
    """Build an index bundle from one or more sources and print its summary as JSON."""
    from index_builder.build import build_bundle
    from index_builder.chunking import ChunkingConfig

    manifest = build_bundle(
        out,
        source,
        text_embedder=text_embedder,
        image_embedder=image_embedder,
        factory=factory,
        image_factory=image_factory,
        gpu=gpu,
        batch_size=batch_size,
        store=_store(use_store),
        chunking=ChunkingConfig(chunk_tokens, chunk_overlap),
        split=split,
        show_progress=progress,
        engine=engine,
        memory_budget=int(memory_budget_gb * 2**30) if memory_budget_gb is not None else None,
        shard_size=shard_size,
        ray_address=ray_address,
        ray_cpus=ray_cpus,
    )
    typer.echo(json.dumps(_summary(manifest, out.expanduser().resolve()), indent=2))


@index_app.command("add")
def add_cmd(
    out: Path = typer.Argument(..., help="Existing bundle folder."),
    source: list[str] = typer.Option(..., "--source", "-s", help=SOURCE_HELP),
    image_embedder: str = typer.Option(
        "builtin", help="Image embedder when the bundle has no image index yet."
    ),
    split: str | None = typer.Option(None, help="train, dev or all for sources with splits."),
    batch_size: int = typer.Option(64, min=1, help="Encoder batch size."),
    use_store: bool = typer.Option(True, "--store/--no-store", help="Register documents in the database."),
    progress: bool = typer.Option(
        _progress_default(), "--progress/--no-progress", help="Show progress bars."
    ),
) -> None:
    """Add documents/images to a bundle (same ids replace the old ones), atomically."""
    from index_builder.build import add_to_bundle

    manifest = add_to_bundle(
        out,
        source,
        image_embedder=image_embedder,
        batch_size=batch_size,
        split=split,
        store=_store(use_store),
        show_progress=progress,
    )
    typer.echo(json.dumps(_summary(manifest, out.expanduser().resolve()), indent=2))


@index_app.command("delete")
def delete_cmd(
    out: Path = typer.Argument(..., help="Existing bundle folder."),
    doc_id: list[str] = typer.Option(..., "--doc-id", help="Document (or image) id to remove, repeatable."),
    use_store: bool = typer.Option(True, "--store/--no-store", help="Also remove them from the database."),
) -> None:
    """Delete documents (by doc_id) or images (by image_id) from a bundle, atomically."""
    from index_builder.build import delete_from_bundle

    manifest = delete_from_bundle(out, doc_id, store=_store(use_store))
    typer.echo(json.dumps(_summary(manifest, out.expanduser().resolve()), indent=2))


@index_app.command("reembed")
def reembed_cmd(
    out: Path = typer.Argument(..., help="Existing bundle folder."),
    image_embedder: str | None = typer.Option(
        None, "--image-embedder", help="Image embedder spec (default: the one the bundle records)."
    ),
    progress: bool = typer.Option(_progress_default(), "--progress/--no-progress"),
) -> None:
    """Re-embed a bundle's images and cross-modal vectors (after new image-encoder weights), keeping its text."""
    from index_builder.reembed import reembed_images

    manifest = reembed_images(out, image_embedder=image_embedder, show_progress=progress)
    typer.echo(json.dumps(_summary(manifest, out.expanduser().resolve()), indent=2))


@index_app.command("info")
def info_cmd(
    out: Path = typer.Argument(..., help="Bundle folder."),
    verify: bool = typer.Option(
        False, "--verify", help="Check every file's SHA-256 (sizes are always checked)."
    ),
    ids: bool = typer.Option(False, "--ids", help="Also list document ids."),
) -> None:
    """Print a bundle's manifest summary as JSON (exit code 2 when a file is damaged)."""
    from index_builder.bundle import Bundle

    bundle = Bundle.open(out, verify=verify)
    payload = {k: v for k, v in bundle.manifest.items() if k != "files"}
    payload["bundle"] = str(bundle.path)
    payload["verified"] = "sha256" if verify else "sizes"
    payload["files"] = {k: v["size"] for k, v in bundle.manifest["files"].items()}
    if ids:
        payload["doc_ids"] = bundle.documents["doc_id"].tolist()
    typer.echo(json.dumps(payload, indent=2))


@index_app.command("sources")
def sources_cmd() -> None:
    """List source kinds and embedder backends."""
    from index_builder.embedders import IMAGE_EMBEDDERS, TEXT_EMBEDDERS
    from index_builder.sources import describe_sources

    payload = {
        "sources": describe_sources(),
        "text_embedders": TEXT_EMBEDDERS.describe(),
        "image_embedders": IMAGE_EMBEDDERS.describe(),
    }
    typer.echo(json.dumps(payload, indent=2))


@bench_app.command("ingest")
def bench_ingest_cmd(
    n: int = typer.Option(5000, min=1, help="Documents to ingest."),
    source: list[str] = typer.Option(["hpo"], "--source", "-s", help="Where the documents come from."),
    text_embedder: str = typer.Option("builtin", help="Text embedder spec."),
    batch_size: int = typer.Option(64, min=1, help="Encoder batch size (same for both runs)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    repeats: int = typer.Option(2, min=1, help="Interleaved repeats; the best time of each run is kept."),
    backend: list[str] = typer.Option(
        ["torch", "onnx"],
        "--backend",
        help="Text backends side by side (repeatable; the first is the reference).",
    ),
) -> None:
    """Raw encoder throughput vs the full ingest pipeline (texts/s and their ratio), and the torch and onnx
    text backends side by side (chunks/s, query latency, mean cosine, top-10 overlap), as JSON."""
    from index_builder.bench import bench_ingest

    report = bench_ingest(
        n=n,
        sources=source,
        text_embedder=text_embedder,
        batch_size=batch_size,
        seed=seed,
        repeats=repeats,
        backends=backend,
    )
    typer.echo(json.dumps(report, indent=2))


@bench_app.command("ann")
def bench_ann_cmd(
    n: int = typer.Option(1_000_000, min=100, help="Vectors in the index."),
    dim: int = typer.Option(384, min=2, help="Dimension."),
    factory: list[str] = typer.Option(["HNSW32,Flat"], "--factory", help="FAISS factory, repeatable."),
    queries: int = typer.Option(1000, min=10, help="Queries (searched one at a time)."),
    ef_search: str = typer.Option("16,32,64,128,256", help="HNSW efSearch values (comma list)."),
    nprobe: str = typer.Option("8,16,32,64,128", help="IVF nprobe values (comma list)."),
    ef_construction: int = typer.Option(80, min=8, help="HNSW efConstruction."),
    clusters: int = typer.Option(1000, min=1, help="Gaussian mixture components."),
    spread: float = typer.Option(
        1.0, min=0.0, help="Noise norm relative to the cluster centre (higher: harder)."
    ),
    threads: int = typer.Option(1, min=1, help="OpenMP threads per single query."),
    seed: int = typer.Option(0, help="Data seed."),
) -> None:
    """Recall@10, single-query p50/p95 latency, build time and memory of FAISS factories, as JSON."""
    from index_builder.bench import bench_ann
    from zebra.errors import ConfigError

    try:
        efs = [int(x) for x in ef_search.split(",") if x.strip()]
        nps = [int(x) for x in nprobe.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(
            "--ef-search/--nprobe take comma-separated integers.", hint="E.g. 32,64,128."
        ) from exc
    report = bench_ann(
        n=n,
        dim=dim,
        factories=factory,
        queries=queries,
        ef_search=efs,
        nprobe=nps,
        ef_construction=ef_construction,
        clusters=clusters,
        spread=spread,
        seed=seed,
        search_threads=threads,
    )
    typer.echo(json.dumps(report, indent=2))
