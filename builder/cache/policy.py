"""What the build cache keeps alive, and how its prune policies are written.

`build_cache_roots(root)` is what `pybuild prune` gives the store's GC: every digest named by a
cache entry stays, and the COPY hints whose snapshot went are forgotten afterwards. The memo, the
context checksums and the files of RUN cache mounts root nothing. The policy texts (`--keep-duration
24h`, `--filter kind=RUN`) are parsed here; applying them is builder/analyze/cache.py's `prune_cache`.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from builder.cache.keys import BuildCache
from builder.errors import BuildError
from builder.store.gc import GCRoots

__all__ = ["build_cache_roots", "PolicyError", "parse_duration", "parse_filters", "FILTERS"]

FILTERS = ("until", "unused-for", "kind", "key")


class PolicyError(BuildError):
    """A malformed prune policy or filter."""


def build_cache_roots(root: str | os.PathLike[str]) -> GCRoots:
    """The GC roots of the build cache of the store at `root` (its entries, `cache/keys/*/*.json`)."""
    cache = BuildCache(root)
    return GCRoots(("cache/keys/*/*.json",), after=cache.forget_copy_results)


def parse_duration(text: str, *, what: str = "duration") -> float:
    """'90s', '30m', '24h', '7d', '1h30m' or plain seconds -> seconds."""
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise PolicyError(f"invalid {what} {text!r}", hint="use e.g. 90s, 30m, 24h, 7d or 1h30m")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(float(n) * unit[u] for n, u in parts)


def parse_filters(items: Iterable[str] | None) -> dict[str, str]:
    """`["kind=RUN", "unused-for=3h"]` -> {"kind": "RUN", "unused-for": "3h"} (names checked)."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or name not in FILTERS or not value:
            raise PolicyError(f"invalid --filter {item!r}", hint=f"use NAME=VALUE with NAME one of {', '.join(FILTERS)}")
        out[name] = value
    return out
