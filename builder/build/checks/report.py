"""Build-check results as buildx shows them: `--check`'s text (each warning with its rule, link,
message and the Dockerfile lines around it), the short list printed after a build, and the JSON of
BuildKit's lint subrequest (`warnings`, `sources`, `buildError`) for tools."""

from __future__ import annotations

import base64
from typing import Any

from builder.build.checks.walk import CheckResult, Violation

__all__ = ["render_text", "render_summary", "render_json"]


def _source_lines(result: CheckResult, v: Violation) -> list[str]:
    """BuildKit's errdefs.Source.Print: the file and line, then the lines around it, `>>>` marking it."""
    lines = result.source.split("\n")
    start, end = v.line, min(v.end_line, len(lines))
    if start < 1 or start > len(lines):
        return []
    first = start
    pad = 4 if end == start else 2
    p = 0
    while p < pad:
        if start > 1:
            start -= 1
            p += 1
        if end != len(lines):
            end += 1
            p += 1
        p += 1
    out = [f"{result.filename}:{first}", "-" * 20]
    out += [f" {i:3d} | {'>>>' if v.line <= i <= max(v.end_line, v.line) else '   '} {lines[i - 1]}"
            for i in range(start, end + 1)]
    return out + ["-" * 20]


def render_text(result: CheckResult) -> str:
    """What `docker build --check` prints."""
    n = len(result.violations)
    out = [f"Check complete, {n} warning{'s have' if n != 1 else ' has'} been found!" if n
           else "Check complete, no warnings found."]
    for v in result.violations:
        out += ["", f"WARNING: {v.rule.name}" + (f" - {v.rule.url}" if v.rule.url else ""), v.detail]
        out += _source_lines(result, v)
    if result.error:
        out += ["", f"ERROR: {result.error}"]
    return "\n".join(out) + "\n"


def render_summary(result: CheckResult) -> str:
    """The list buildx prints after a build (empty when nothing was found)."""
    n = len(result.violations)
    if not n:
        return ""
    head = f" {n} warning{'s' if n != 1 else ''} found (use pybuild check for details):"
    return "\n".join([head] + [f" - {v.short()}" for v in result.violations]) + "\n"


def render_json(result: CheckResult) -> dict[str, Any]:
    """The lint subrequest's `result.json`: warnings with rule, description, url, detail and a
    location (line ranges; `character` is the 0-based column where pybuild knows it)."""
    def location(v: Violation) -> dict[str, Any]:
        start: dict[str, int] = {"line": v.line}
        if v.column > 1:
            start["character"] = v.column - 1
        return {"sourceIndex": 0, "ranges": [{"start": start, "end": {"line": v.end_line}}]}

    out: dict[str, Any] = {
        "warnings": [{"ruleName": v.rule.name, "description": v.rule.description,
                      **({"url": v.rule.url} if v.rule.url else {}), "detail": v.detail, "location": location(v)}
                     for v in result.violations],
        "sources": [{"filename": result.filename, "language": "Dockerfile",
                     "data": base64.b64encode(result.source.encode()).decode()}],
    }
    if result.error:
        first = result.violations[0]
        out["buildError"] = {"message": result.error, "location": location(first)}
    return out
