"""What the listing commands share with docker's: `--format` (a Go template, `table`, `json`) and
`-f/--filter KEY=VALUE` (repeatable; several values of one key are alternatives)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from typing import Any, Mapping, Sequence

from builder.errors import BuildError


def add_format(p: argparse.ArgumentParser, *, short: bool = False) -> None:
    flags = ("-f", "--format") if short else ("--format",)
    p.add_argument(*flags, dest="format", metavar="FORMAT",
                   help="a Go template ({{.ID}}, {{json .}}, 'table {{.ID}}\\t{{.Size}}'), or json")


def add_filter(p: argparse.ArgumentParser, keys: Sequence[str]) -> None:
    p.add_argument("-f", "--filter", dest="filter", action="append", default=[], metavar="KEY=VALUE",
                   help=f"only what matches ({', '.join(keys)})")


def parse_filters(values: Sequence[str], keys: Sequence[str]) -> dict[str, list[str]]:
    """`KEY=VALUE` pairs, checked against the keys the command knows (as dockerd's `invalid filter`)."""
    out: dict[str, list[str]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq:
            raise BuildError(f"bad format of filter (expected name=value): {v!r}")
        if key not in keys:
            raise BuildError(f"invalid filter '{key}'", hint=f"the filters are {', '.join(keys)}")
        out.setdefault(key, []).append(value)
    return out


def label_matches(labels: Mapping[str, str], wanted: Sequence[str]) -> bool:
    """`label=KEY` (present) or `label=KEY=VALUE`; every one must match."""
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def reference_matches(name: str, patterns: Sequence[str]) -> bool:
    """`reference=busybox`, `reference=my*`, `reference=busybox:1.*` (any one matches)."""
    repo, _, tag = name.rpartition(":")
    for pat in patterns:
        if ":" in pat.rsplit("/", 1)[-1]:
            if fnmatch.fnmatchcase(name, pat):
                return True
        elif fnmatch.fnmatchcase(repo, pat) or fnmatch.fnmatchcase(repo.rsplit("/", 1)[-1], pat):
            return True
    return False


def print_formatted(fmt: str, rows: Sequence[Mapping[str, Any]], headers: Mapping[str, str]) -> None:
    """`--format json` (one JSON object per line, as docker) or a Go template per row."""
    if fmt == "json":
        for r in rows:
            print(json.dumps(r, separators=(",", ":")))
        return
    from builder.util.gotemplate import render_rows

    sys.stdout.write(render_rows(fmt, rows, headers))
