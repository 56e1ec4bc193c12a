"""`analyze --html`: one self-contained page (inline CSS, SVG and script, no network) that opens from disk.

Sections: the image's figures, the layer explorer (builder/analyze/html_explorer.py), a bar chart
of layer sizes with the wasted part of each bar, the step waterfall of a build (cached steps
marked), the rebuild-cost table and suggestions.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, Sequence

from builder.analyze.advice import RebuildCost, Suggestion
from builder.analyze.layers import ImageReport
from builder.analyze.report import human_size, percent

if TYPE_CHECKING:
    from builder.analyze.explore import Explorer

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.kv td:first-child{color:#555}.muted{color:#777}code{background:#f4f4f4;padding:1px 4px}
svg text{font:12px system-ui,sans-serif}
"""
BAR, WASTE, CACHED, RAN = "#4a7fd4", "#d9534f", "#9e9e9e", "#3c9a5f"


@dataclass(frozen=True, slots=True)
class TimelineStep:
    """One bar of the waterfall: a step, when it started (seconds from the build's start), how long."""

    label: str
    start: float
    duration: float
    cached: bool


def timeline(build: dict[str, Any]) -> list[TimelineStep]:
    """Waterfall bars from a build record: a step's own `started` when recorded, else end to end."""
    t0 = float(build.get("started", 0.0))
    out, clock = [], 0.0
    for s in build.get("steps", []):
        start = float(s["started"]) - t0 if s.get("started") else clock
        dur = float(s.get("duration", 0.0))
        clock = max(clock, start + dur)
        where = f"[{s['platform']}] " if s.get("platform") else ""  # a multi-platform build: whose step
        out.append(TimelineStep(f"#{s.get('id', '?')} {where}{s.get('instruction', '')}", start, dur,
                                s.get("cache") == "hit"))
    return out


def _chart(report: ImageReport) -> str:
    rows = report.layers
    width, label_w, row_h = 900, 330, 24
    biggest = max([l.content_size for l in rows] + [1])
    scale = (width - label_w - 200) / biggest
    parts = [f'<svg id="layer-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row_h * len(rows) + 40}" role="img" aria-label="layer sizes and wasted bytes">']
    for i, l in enumerate(rows):
        y = 10 + i * row_h
        w, waste = l.content_size * scale, min(l.wasted_bytes, l.content_size) * scale
        name = escape(f"{l.index}: {(l.created_by or '-')[:44]}")
        parts.append(f'<text x="0" y="{y + 15}">{name}</text>')
        parts.append(f'<rect class="size" x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{BAR}">'
                     f'<title>layer {l.index}: {l.content_size} bytes</title></rect>')
        if waste:
            parts.append(f'<rect class="wasted" x="{label_w}" y="{y}" width="{waste:.1f}" height="{row_h - 6}" '
                         f'fill="{WASTE}"><title>layer {l.index}: {l.wasted_bytes} bytes wasted</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{human_size(l.content_size)}'
                     f'{" (" + human_size(l.wasted_bytes) + " wasted)" if l.wasted_bytes else ""}</text>')
    y = 10 + len(rows) * row_h + 8
    parts.append(f'<rect x="{label_w}" y="{y}" width="12" height="12" fill="{BAR}"/>'
                 f'<text x="{label_w + 16}" y="{y + 11}">content</text>'
                 f'<rect x="{label_w + 90}" y="{y}" width="12" height="12" fill="{WASTE}"/>'
                 f'<text x="{label_w + 106}" y="{y + 11}">wasted (overwritten or deleted later)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _waterfall(steps: list[TimelineStep]) -> str:
    if not steps:
        return '<p class="muted">No build record for this image.</p>'
    width, label_w, row_h = 900, 360, 20
    end = max([s.start + s.duration for s in steps] + [0.001])
    scale = (width - label_w - 110) / end
    parts = [f'<svg id="waterfall" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row_h * len(steps) + 36}" role="img" aria-label="build steps over time">']
    for i, s in enumerate(steps):
        y = 6 + i * row_h
        w = max(s.duration * scale, 2)
        colour = CACHED if s.cached else RAN
        parts.append(f'<text x="0" y="{y + 13}">{escape(s.label[:52])}</text>')
        parts.append(f'<rect class="{"cached" if s.cached else "ran"}" x="{label_w + s.start * scale:.1f}" y="{y}" '
                     f'width="{w:.1f}" height="{row_h - 5}" fill="{colour}"><title>{escape(s.label)}: '
                     f'{s.duration:.2f}s{" (cached)" if s.cached else ""}</title></rect>')
        parts.append(f'<text x="{label_w + s.start * scale + w + 4:.1f}" y="{y + 13}">{s.duration:.2f}s'
                     f'{" CACHED" if s.cached else ""}</text>')
    y = 6 + len(steps) * row_h + 6
    parts.append(f'<rect x="{label_w}" y="{y}" width="12" height="12" fill="{RAN}"/><text x="{label_w + 16}" '
                 f'y="{y + 11}">ran</text><rect x="{label_w + 60}" y="{y}" width="12" height="12" fill="{CACHED}"/>'
                 f'<text x="{label_w + 76}" y="{y + 11}">cached</text></svg>')
    return "".join(parts)


def _figures(r: ImageReport) -> str:
    rows = [
        ("Layers", str(len(r.layers))),
        ("Total content", f"{human_size(r.size_bytes)} ({r.size_bytes} bytes)"),
        ("Visible in the final filesystem", f"{human_size(r.final_size_bytes)} ({r.final_size_bytes} bytes)"),
        ("Efficiency (dive)", percent(r.dive_efficiency)),
        ("Wasted bytes (dive, every copy)", f"{human_size(r.dive_wasted_bytes)} ({r.dive_wasted_bytes} bytes)"),
        ("User wasted (dive)", percent(r.dive_user_wasted_percent)),
        ("Wasted bytes (corrected)", f"{human_size(r.wasted_bytes)} ({r.wasted_bytes} bytes)"),
        ("A user could save", f"{human_size(r.user_wasted_bytes)} ({r.user_wasted_bytes} bytes, "
                              f"{percent(r.user_wasted_percent)})"),
    ]
    return '<table class="kv" id="figures">' + "".join(
        f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _layers_table(r: ImageReport) -> str:
    head = ("#", "compressed", "tar", "content", "added", "modified", "removed", "wasted", "instruction")
    out = ['<table id="layers"><tr>' + "".join(f'<th class="{"n" if i < 8 else ""}">{h}</th>'
                                                for i, h in enumerate(head)) + "</tr>"]
    for l in r.layers:
        cells = (l.index, human_size(l.compressed_size), human_size(l.uncompressed_size), human_size(l.content_size),
                 len(l.added), len(l.modified), l.removed_files, human_size(l.wasted_bytes))
        out.append("<tr>" + "".join(f'<td class="n">{escape(str(c))}</td>' for c in cells)
                   + f"<td><code>{escape(l.created_by or '-')}</code></td></tr>")
    return "".join(out) + "</table>"


def _costs(costs: list[RebuildCost], limit: int = 25) -> str:
    if not costs:
        return '<p class="muted">No build record with context inputs for this image.</p>'
    out = ['<table id="rebuild-cost"><tr><th>context path</th><th class="n">files</th>'
           '<th class="n">rebuild cost</th><th>steps it invalidates</th></tr>']
    for c in costs[:limit]:
        out.append(f'<tr><td><code>{escape(c.path)}</code></td><td class="n">{c.files}</td>'
                   f'<td class="n">{c.seconds:.2f}s</td><td>{escape("; ".join(c.steps))}</td></tr>')
    return "".join(out) + "</table>"


def _suggestions(items: list[Suggestion]) -> str:
    if not items:
        return '<p class="muted">No suggestions.</p>'
    return '<ul id="suggestions">' + "".join(
        f"<li>line {s.line} <code>{escape(s.instruction)}</code>: {escape(s.message)}</li>" for s in items) + "</ul>"


def render_html(report: ImageReport, *, build: dict[str, Any] | None = None, costs: Sequence[RebuildCost] = (),
                suggestions: Sequence[Suggestion] = (), explorer: "Explorer | None" = None,
                layer_steps: dict[str, str] | None = None) -> str:
    """The whole page as a string (with the layer explorer when `explorer` is given)."""
    title = f"pybuild analyze: {report.reference}"
    steps = timeline(build) if build else []
    build_note = f" (build {escape(build.get('id', ''))})" if build else ""
    css, tree = CSS, ""
    if explorer is not None:
        from builder.analyze.html_explorer import CSS as EXPLORER_CSS, explorer_section

        css, tree = CSS + EXPLORER_CSS, f"<h2>Layer explorer</h2>{explorer_section(explorer, layer_steps)}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{css}</style></head><body><h1>{escape(title)}</h1>"
            f"<h2>Figures</h2>{_figures(report)}{tree}"
            f"<h2>Layer sizes and wasted bytes</h2>{_chart(report)}{_layers_table(report)}"
            f"<h2>Build steps{build_note}</h2>{_waterfall(steps)}"
            f"<h2>Rebuild cost per context path</h2>{_costs(list(costs))}"
            f"<h2>Suggestions</h2>{_suggestions(list(suggestions))}"
            "</body></html>")
