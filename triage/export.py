"""Exports of a run: a CSV and a self-contained HTML worklist, both sorted by priority.

Per item: accession (never a patient name), priority and its drivers, top diagnoses with probabilities,
abstention, change statement, error if any. The HTML inlines thumbnails and heatmap overlays as base64 PNGs
and needs no network and no script. Items in error are listed first in the HTML (they need a person to
look at the input); the CSV lists them last (no priority).
"""

from __future__ import annotations

import csv
import html
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from triage.priority import drivers_text, sort_key

log = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = (
    "rank",
    "priority",
    "accession",
    "item_key",
    "status",
    "drivers",
    "top_diagnosis",
    "top_probability",
    "differential",
    "abstained",
    "abstain_reason",
    "change",
    "change_confidence",
    "change_statement",
    "anomaly_score",
    "nearest_similarity",
    "error",
    "attempts",
)
#: Characters that make spreadsheet programs evaluate a cell as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def sorted_items(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items by priority (highest first), worsening first on ties, then key; unscored items last."""

    def key(it: dict[str, Any]) -> tuple[Any, ...]:
        change = ((it.get("result") or {}).get("change") or {}).get("label")
        return sort_key(it.get("priority"), change, it["item_key"])

    return sorted(items, key=key)


def _safe_cell(value: Any) -> Any:
    """Neutralises spreadsheet formulas in text cells (worklist text is untrusted)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def row_of(rank: int | None, item: dict[str, Any]) -> dict[str, Any]:
    """The CSV row of an item (strings; empty when unknown)."""
    result = item.get("result") or {}
    diff = result.get("differential") or []
    change = result.get("change") or {}
    findings = result.get("findings") or {}
    prio = result.get("priority") or {}
    return {
        "rank": "" if rank is None else rank,
        "priority": _fmt(item.get("priority"), 2),
        "accession": item.get("accession") or "",
        "item_key": item["item_key"],
        "status": item.get("status", ""),
        "drivers": drivers_text(prio),
        "top_diagnosis": diff[0]["diagnosis"] if diff else "",
        "top_probability": _fmt(diff[0].get("probability")) if diff else "",
        "differential": "; ".join(f"{d['diagnosis']} ({_fmt(d.get('probability'), 2)})" for d in diff),
        "abstained": "" if not result else ("yes" if result.get("abstained") else "no"),
        "abstain_reason": result.get("abstain_reason") or "",
        "change": change.get("label") or "",
        "change_confidence": _fmt(change.get("confidence")),
        "change_statement": change.get("statement") or "",
        "anomaly_score": _fmt(findings.get("anomaly_score")),
        "nearest_similarity": _fmt((result.get("rarity") or {}).get("nearest_similarity")),
        "error": (item.get("error") or "") if item.get("status") == "error" else "",
        "attempts": item.get("attempts", ""),
    }


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(items: Sequence[dict[str, Any]]) -> str:
    """The CSV export (header + one row per item, by priority; items without priority last)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    rank = 0
    for item in sorted_items(items):
        scored = item.get("priority") is not None
        rank += scored
        row = row_of(rank if scored else None, item)
        writer.writerow({k: _safe_cell(v) for k, v in row.items()})
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}.banner{background:#fff3cd;border:1px solid #e0c36a;padding:.5em;margin-bottom:1em}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.35em;vertical-align:top;font-size:.9em}
th{background:#f0f0f0;text-align:left}td.p{font-weight:bold;font-size:1.1em}
img{display:block;max-width:160px;image-rendering:auto}.err{background:#fde2e2}
.worsening{color:#b00020;font-weight:bold}.improved{color:#1b5e20}.muted{color:#777}
ol{margin:0;padding-left:1.2em}
"""


def _img(b64: str | None, alt: str) -> str:
    if not b64:
        return '<span class="muted">none</span>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{html.escape(b64)}">'


def html_text(items: Sequence[dict[str, Any]], *, run_name: str = "") -> str:
    """The self-contained HTML worklist (see the module docstring); every text is escaped."""
    e = html.escape
    ordered = sorted_items(items)
    errors = [it for it in ordered if it.get("status") == "error"]
    scored = [it for it in ordered if it.get("status") == "done"]
    other = [it for it in ordered if it.get("status") not in ("done", "error")]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Zebra triage {e(run_name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Triage worklist {e(run_name)}</h1>",
        '<div class="banner">Research use only. Machine triage for prioritising human reads; not a diagnosis.</div>',
        f"<p>{len(scored)} triaged, {len(errors)} in error, {len(other)} not finished.</p>",
    ]
    if errors:
        parts.append(
            "<h2>Needs manual handling (processing failed)</h2><table><tr><th>Accession</th>"
            "<th>Key</th><th>Attempts</th><th>Error</th></tr>"
        )
        for it in errors:
            parts.append(
                f'<tr class="err"><td>{e(it.get("accession") or "")}</td><td>{e(it["item_key"])}</td>'
                f"<td>{e(str(it.get('attempts', '')))}</td><td>{e(it.get('error') or '')}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>By priority</h2><table><tr><th>#</th><th>Priority</th><th>Accession</th><th>Image</th>"
        "<th>Heatmap</th><th>Drivers</th><th>Top diagnoses</th><th>Abstention</th><th>Change</th></tr>"
    )
    for rank, it in enumerate(scored, start=1):
        res = it.get("result") or {}
        prio = res.get("priority") or {}
        drivers = "".join(
            f"<li>{e(d['name'])}: {d['points']:.1f} (value {d['value']:.2f})</li>"
            for d in prio.get("drivers") or []
        )
        diff = "".join(
            f"<li>{e(d['diagnosis'])} ({float(d.get('probability') or 0):.0%})</li>"
            for d in (res.get("differential") or [])[:5]
        )
        abst = e(res.get("abstain_reason") or "abstained") if res.get("abstained") else "no"
        change = res.get("change") or {}
        label = change.get("label") or ""
        change_html = (
            f'<span class="{e(label)}">{e(label)}</span>'
            + (f" ({float(change['confidence']):.0%})" if change.get("confidence") is not None else "")
            + (f"<br>{e(change.get('statement') or '')}" if change.get("statement") else "")
            if change
            else '<span class="muted">no prior</span>'
        )
        media = res.get("media") or {}
        parts.append(
            f'<tr><td>{rank}</td><td class="p">{float(it["priority"]):.1f}</td>'
            f'<td>{e(it.get("accession") or "")}<br><span class="muted">{e(it["item_key"])}</span></td>'
            f"<td>{_img(media.get('thumbnail'), 'image')}</td><td>{_img(media.get('overlay'), 'heatmap')}</td>"
            f"<td><ol>{drivers}</ol></td><td><ol>{diff}</ol></td><td>{abst}</td><td>{change_html}</td></tr>"
        )
    parts.append("</table>")
    if other:
        parts.append("<h2>Not finished</h2><ul>")
        parts.extend(
            f"<li>{e(it.get('accession') or it['item_key'])} ({e(it.get('status', ''))})</li>" for it in other
        )
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_exports(items: Sequence[dict[str, Any]], out: Path, *, run_name: str = "") -> dict[str, Path]:
    """Writes ``triage.csv`` and ``triage.html`` into ``out`` (atomically) and returns their paths."""
    out = Path(out).expanduser()
    paths = {"csv": out / "triage.csv", "html": out / "triage.html"}
    _atomic_write_text(paths["csv"], csv_text(items))
    _atomic_write_text(paths["html"], html_text(items, run_name=run_name))
    log.info("wrote %s and %s", paths["csv"].name, paths["html"].name)
    return paths
