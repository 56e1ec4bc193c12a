"""`ImageReport` rendered for people (a table) and for tools (JSON)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from builder.analyze.layers import FileRef, ImageReport

JSON_VERSION = 1


def human_size(n: int | float | None) -> str:
    """Decimal units, as docker prints them: 999 B, 1.2 kB, 3.4 MB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - unreachable


def percent(ratio: float) -> str:
    return "+Inf %" if ratio == math.inf else f"{ratio * 100:.2f} %"


def to_json(report: ImageReport, *, files: bool = True) -> dict[str, Any]:
    """A JSON-ready dict of the whole report; `files=False` leaves out the per-layer file lists."""
    data = dataclasses.asdict(report)
    config = data.pop("config", None) or {}
    data["image"] = {k: config[k] for k in ("id", "platform", "created") if k in config}
    if data["dive_user_wasted_percent"] == math.inf:  # JSON has no infinity
        data["dive_user_wasted_percent"] = None
    if not files:
        for layer in data["layers"]:
            for key in ("added", "modified", "removed"):
                layer[key] = len(layer[key])
    return {"version": JSON_VERSION, **data}


def dumps(report: ImageReport, *, files: bool = True) -> str:
    return json.dumps(to_json(report, files=files), indent=2)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _files(title: str, refs: tuple[FileRef, ...], limit: int) -> list[str]:
    if not refs:
        return []
    out = ["", title]
    out += [f"  {human_size(f.size):>10}  layer {f.layer:<3} {f.path}" for f in refs[:limit]]
    return out


def render_layer_files(report: ImageReport, *, top: int = 10) -> str:
    """Per layer, the files it added, modified and removed (at most `top` of each, largest first)."""
    lines: list[str] = []
    for layer in report.layers:
        lines += ["", f"Layer {layer.index}: {_short(layer.created_by or '-', 90)}"]
        for title, refs in (("added", layer.added), ("modified", layer.modified), ("removed", layer.removed)):
            if not refs:
                continue
            shown = sorted(refs, key=lambda f: (-f.size, f.path))[:top]
            lines.append(f"  {title} ({len(refs)}):")
            lines += [f"    {human_size(f.size):>10}  {f.path}" for f in shown]
            if len(refs) > top:
                lines.append(f"    ... {len(refs) - top} more")
    return "\n".join(lines)


def render_table(report: ImageReport, *, top: int = 10, width: int = 60) -> str:
    """The default human output of `pybuild analyze`."""
    head = f"{'#':>3}  {'COMPRESSED':>10}  {'TAR':>10}  {'CONTENT':>10}  {'ADDED':>6}  {'MODIFIED':>8}  " \
           f"{'REMOVED':>7}  {'WASTED':>10}  INSTRUCTION"
    lines = [f"Image: {report.reference or '(unnamed)'}  ({len(report.layers)} layers)", "", head]
    for layer in report.layers:
        lines.append(
            f"{layer.index:>3}  {human_size(layer.compressed_size):>10}  {human_size(layer.uncompressed_size):>10}  "
            f"{human_size(layer.content_size):>10}  {len(layer.added):>6}  {len(layer.modified):>8}  "
            f"{layer.removed_files:>7}  {human_size(layer.wasted_bytes):>10}  {_short(layer.created_by or '-', width)}")
    r = report
    lines += [
        "",
        f"Total content:                {human_size(r.size_bytes)} ({r.size_bytes} bytes), "
        f"{human_size(r.final_size_bytes)} visible in the final filesystem",
        f"Efficiency (dive):            {percent(r.dive_efficiency)}",
        f"Wasted bytes (dive):          {human_size(r.dive_wasted_bytes)} ({r.dive_wasted_bytes} bytes; counts every copy, "
        "the surviving one too)",
        f"User wasted (dive):           {percent(r.dive_user_wasted_percent)} of the layers after the first",
        f"Wasted bytes (corrected):     {human_size(r.wasted_bytes)} ({r.wasted_bytes} bytes stored but never visible)",
        f"A user could save:            {human_size(r.user_wasted_bytes)} ({r.user_wasted_bytes} bytes, "
        f"{percent(r.user_wasted_percent)} of the {r.base_layers and 'non-base ' or ''}layers)",
    ]
    lines += _files("Largest files:", r.largest_files, top)
    lines += _files("Largest wasted copies (stored in the layer shown, hidden later):", r.wasted_files, top)
    shown = [i for i in r.inefficiencies if i.cumulative_size][:top]
    if shown:
        lines += ["", "Inefficient paths (dive: recorded in several layers; total of all copies):"]
        lines += [f"  {human_size(i.cumulative_size):>10}  {len(i.layers)} copies (layers "
                  f"{', '.join(map(str, i.layers))})  {i.path}" for i in shown]
    return "\n".join(lines)
