"""``report.html``: a self-contained page (inline SVG drawn here, no scripts, no external files).

Sections: run metadata, headline table with 95% bootstrap intervals, reliability plot (accuracy against mean
confidence per bin, bar width = bin), risk-coverage curve with the abstention operating point, per-case table.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.scoring import HEADLINE, SECONDARY

_W, _H, _PAD = 320, 240, 36


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _xy(x: float, y: float) -> tuple[float, float]:
    return _PAD + x * (_W - 2 * _PAD), _H - _PAD - y * (_H - 2 * _PAD)


def _axes(x_label: str, y_label: str) -> list[str]:
    x0, y0 = _xy(0, 0)
    x1, y1 = _xy(1, 1)
    parts = [
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>',
        f'<text x="{(x0 + x1) / 2}" y="{_H - 6}" text-anchor="middle" font-size="11">{html.escape(x_label)}</text>',
        f'<text x="10" y="{(y0 + y1) / 2}" font-size="11" transform="rotate(-90 10 {(y0 + y1) / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>',
    ]
    for t in (0.0, 0.5, 1.0):
        tx, _ = _xy(t, 0)
        _, ty = _xy(0, t)
        parts.append(f'<text x="{tx}" y="{y0 + 12}" text-anchor="middle" font-size="9">{t:g}</text>')
        parts.append(f'<text x="{x0 - 4}" y="{ty + 3}" text-anchor="end" font-size="9">{t:g}</text>')
    return parts


def reliability_svg(bins: Sequence[dict[str, Any]]) -> str:
    """Reliability diagram: per-bin accuracy bars against the diagonal."""
    parts = _axes("confidence", "accuracy")
    (dx0, dy0), (dx1, dy1) = _xy(0, 0), _xy(1, 1)
    parts.append(f'<line x1="{dx0}" y1="{dy0}" x2="{dx1}" y2="{dy1}" stroke="#bbb" stroke-dasharray="4 3"/>')
    for b in bins:
        if not b.get("count") or b.get("accuracy") is None:
            continue
        x0, y0 = _xy(float(b["lo"]), 0)
        x1, y1 = _xy(float(b["hi"]), float(b["accuracy"]))
        parts.append(
            f'<rect x="{x0:.1f}" y="{y1:.1f}" width="{x1 - x0:.1f}" height="{y0 - y1:.1f}" fill="#4a7ab5" '
            f'fill-opacity="0.75" stroke="#fff"><title>{b["count"]} case(s), accuracy {b["accuracy"]:.2f}, '
            f"confidence {b['confidence']:.2f}</title></rect>"
        )
    return _svg(parts, "Reliability diagram")


def risk_coverage_svg(curve: dict[str, Sequence[float]], point: dict[str, Any] | None) -> str:
    """Selective risk against coverage, with the abstention operating point."""
    parts = _axes("coverage", "selective risk")
    cov, risk = list(curve.get("coverage") or []), list(curve.get("risk") or [])
    if cov:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (_xy(c, r) for c, r in zip(cov, risk, strict=True)))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#c0392b" stroke-width="1.5"/>')
    if point and point.get("coverage") is not None and point.get("selective_risk") is not None:
        x, y = _xy(float(point["coverage"]), float(point["selective_risk"]))
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#222"><title>operating point: coverage '
            f"{point['coverage']:.2f}, risk {point['selective_risk']:.2f}</title></circle>"
        )
    return _svg(parts, "Risk-coverage curve")


def _svg(parts: list[str], title: str) -> str:
    body = "".join(parts)
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{html.escape(title)}">{body}</svg><figcaption>{html.escape(title)}</figcaption></figure>'
    )


def render_report(summary: dict[str, Any], cases: Sequence[dict[str, Any]]) -> str:
    """The report page as a string."""
    run = summary.get("run") or {}
    ci = summary.get("ci") or {}
    rows = []
    for key in (*HEADLINE, *SECONDARY):
        interval = ci.get(key)
        ci_text = "–" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"
        rows.append(
            f"<tr><th>{html.escape(key)}</th><td>{_fmt(summary.get(key))}</td><td>{ci_text}</td></tr>"
        )
    curves = summary.get("curves") or {}
    plots = ""
    if curves:
        plots = reliability_svg(curves.get("reliability") or []) + risk_coverage_svg(
            curves.get("risk_coverage") or {}, curves.get("operating_point")
        )
    protocol = summary.get("protocol") or "coco"  # summaries written before protocols existed were coco
    unit = summary.get("unit") or "case"
    ap50_key = "nova_ap50" if protocol == "nova" else "ap50"
    case_rows = []
    for case in cases:
        d = case.get("details") or {}
        case_rows.append(
            "<tr>"
            + "".join(
                f"<td>{_fmt(v)}</td>"
                for v in (
                    case.get("case_id"),
                    d.get("truth"),
                    d.get("top1"),
                    d.get("hit_rank"),
                    d.get("confidence"),
                    d.get("abstained"),
                    d.get("cae"),
                    d.get("taxonomy_distance"),
                    d.get(ap50_key),
                    d.get("bleu4"),
                )
            )
            + "</tr>"
        )
    meta_items = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(json.dumps(v) if not isinstance(v, str) else v)}</li>"
        for k, v in run.items()
    )
    agreement = summary.get("judge_agreement")
    agreement_html = (
        f"<p>Judge agreement ({html.escape(' vs '.join(agreement['judges']))}, {agreement['n']} pairs): raw "
        f"{_fmt(agreement['raw'])}, Cohen's kappa {_fmt(agreement['kappa'])}.</p>"
        if agreement
        else ""
    )
    scoring_html = (
        f"<p>Localisation protocol: <b>{html.escape(str(protocol))}</b>"
        f" ({html.escape(str(summary.get('protocol_definition') or ''))}). "
        f"Scoring unit: <b>{html.escape(str(unit))}</b>.</p>"
    )
    warning = (
        "<p class='warn'>This run used the <b>oracle</b> predictor, which reads the gold labels: a harness "
        "check, not a result.</p>"
        if str(run.get("predictor", "")).startswith("oracle")
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Zebra evaluation report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}} th{{background:#f4f4f4}}
figure{{display:inline-block;margin:0 1em 1em 0}} .warn{{color:#a00}} ul{{font-size:13px}}
</style></head><body>
<h1>Zebra evaluation report</h1>
<p>Research use only. {summary.get("n_cases", 0)} case(s); judge: {html.escape(str(summary.get("judge")))}.</p>
{scoring_html}
{warning}
<h2>Run</h2><ul>{meta_items}</ul>
<h2>Headline metrics (95% bootstrap intervals over {html.escape(str(unit))}s)</h2>
<table><tr><th>metric</th><th>value</th><th>95% CI</th></tr>{"".join(rows)}</table>
{agreement_html}
<h2>Calibration and selective prediction</h2>{plots or "<p>No diagnosis task in this run.</p>"}
<h2>Cases</h2>
<table><tr><th>case</th><th>truth</th><th>top-1</th><th>hit rank</th><th>confidence</th><th>abstained</th>
<th>CAE</th><th>ICD-10 distance</th><th>AP50</th><th>BLEU-4</th></tr>{"".join(case_rows)}</table>
</body></html>
"""


def write_report(path: str | Path, summary: dict[str, Any], case_metrics: str | Path | None = None) -> Path:
    """Writes ``report.html`` from a summary and (optionally) ``case_metrics.jsonl``."""
    from eval.jsonl import read_jsonl

    cases = list(read_jsonl(case_metrics)) if case_metrics and Path(case_metrics).is_file() else []
    path = Path(path)
    path.write_text(render_report(summary, cases), encoding="utf-8")
    return path
