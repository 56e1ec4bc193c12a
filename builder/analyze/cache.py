"""`pybuild cache ls / du` and the build-cache policies of `pybuild prune`.

Cache entries (docs/build-records.md) say what a key produced and what it cost; build records
say when a key was last used and how often it was a hit. A layer shared by several entries is
counted once. Prune policies remove entries only; the store's own prune (run right after by
`pybuild prune`) then deletes the blobs that nothing else references.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from builder.analyze.ci import parse_bytes
from builder.analyze.explain import load_builds
from builder.analyze.report import human_size
from builder.cache.keys import BuildCache
from builder.cache.policy import FILTERS, PolicyError, parse_duration, parse_filters

__all__ = ["CacheRow", "PruneResult", "cache_rows", "total_size", "render_ls", "render_du", "du_json", "prune_cache",
           "add_prune_options", "rows_json"]

@dataclass(frozen=True, slots=True)
class CacheRow:
    """One cache entry as `cache ls` shows it."""

    key: str
    kind: str  # RUN | COPY | ADD | WORKDIR | FROM | CONFIG | ?
    instruction: str  # from the latest build record that used the key ("" if none)
    layer_digest: str
    size: int  # compressed layer bytes (0 when the step changed nothing)
    created: float
    last_used: float
    hits: int
    duration: float  # what the step cost when it ran (what each hit saved)


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: tuple[CacheRow, ...]
    freed_bytes: int  # layer bytes no kept entry references any more
    kept: int
    reasons: dict[str, str] = field(default_factory=dict)  # key -> why it went

    def render(self, dry_run: bool = False) -> str:
        verb = "Would delete" if dry_run else "Deleted"
        lines = [f"{verb} build cache: {row.key[7:19]}  {human_size(row.size):>9}  {self.reasons.get(row.key, '')}  "
                 f"{row.instruction or row.kind}" for row in self.removed]
        lines.append(f"Build cache: {'would remove' if dry_run else 'removed'} {len(self.removed)} entries, kept "
                     f"{self.kept}; {'would release' if dry_run else 'released'} {human_size(self.freed_bytes)} of "
                     "layers (their blobs go unless an image uses them)")
        return "\n".join(lines)


def _kind(parts: Iterable[Any]) -> str:
    d = {p[0]: p[1] for p in parts if isinstance(p, (list, tuple)) and len(p) == 2}
    op = d.get("op")
    if isinstance(op, dict) and op.get("kind"):
        return str(op["kind"]).upper()
    if "base" in d:
        return "FROM"
    if "config" in d:
        return "CONFIG"
    return "?"


def cache_rows(root: str | os.PathLike[str]) -> list[CacheRow]:
    """Every cache entry with its use counted from the build records, most recently used first."""
    uses: dict[str, tuple[float, int, str]] = {}  # key -> (last use, hits, instruction)
    for build in load_builds(root):
        when = float(build.get("started", 0.0))
        for s in build.get("steps", []):
            key = s.get("key")
            if not key:
                continue
            last, hits, _ = uses.get(key, (0.0, 0, ""))
            uses[key] = (max(last, when), hits + (s.get("cache") == "hit"), s.get("instruction", ""))
    rows = []
    for e in BuildCache(root).entries():
        last, hits, instruction = uses.get(e.key, (0.0, 0, ""))
        layer = e.layer or {}
        rows.append(CacheRow(e.key, _kind(e.parts), instruction, str(layer.get("digest", "")),
                             int(layer.get("size", 0) or 0), float(e.created), max(last, float(e.created)), hits,
                             float(e.duration)))
    rows.sort(key=lambda r: (-r.last_used, r.key))
    return rows


def total_size(rows: Iterable[CacheRow]) -> int:
    """Layer bytes of these entries, each layer counted once."""
    seen: dict[str, int] = {}
    for r in rows:
        if r.layer_digest:
            seen[r.layer_digest] = r.size
    return sum(seen.values())


def _ago(t: float, now: float) -> str:
    if not t:
        return "never"
    s = max(now - t, 0)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit} ago"
    return f"{int(s)}s ago"


def render_ls(rows: list[CacheRow], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"{'KEY':<14} {'KIND':<7} {'SIZE':>9} {'CREATED':>10} {'LAST USED':>10} {'HITS':>5} {'SAVES':>8}  STEP"]
    for r in rows:
        lines.append(f"{r.key[7:19]:<14} {r.kind:<7} {human_size(r.size):>9} {_ago(r.created, now):>10} "
                     f"{_ago(r.last_used, now):>10} {r.hits:>5} {r.duration:>7.2f}s  {r.instruction}")
    return "\n".join(lines)


def render_du(rows: list[CacheRow]) -> str:
    by_kind: dict[str, list[CacheRow]] = {}
    for r in rows:
        by_kind.setdefault(r.kind, []).append(r)
    lines = [f"{'KIND':<8} {'ENTRIES':>8} {'SIZE':>10} {'HITS':>6} {'TIME SAVED':>11}"]
    for kind, group in sorted(by_kind.items(), key=lambda kv: -total_size(kv[1])):
        lines.append(f"{kind:<8} {len(group):>8} {human_size(total_size(group)):>10} {sum(r.hits for r in group):>6} "
                     f"{sum(r.hits * r.duration for r in group):>10.1f}s")
    total = total_size(rows)
    lines.append(f"{'total':<8} {len(rows):>8} {human_size(total):>10} {sum(r.hits for r in rows):>6} "
                 f"{sum(r.hits * r.duration for r in rows):>10.1f}s   ({total} bytes)")
    return "\n".join(lines)


def du_json(rows: list[CacheRow]) -> dict[str, Any]:
    return {"entries": len(rows), "bytes": total_size(rows), "hits": sum(r.hits for r in rows),
            "seconds_saved": round(sum(r.hits * r.duration for r in rows), 3),
            "by_kind": {k: {"entries": sum(r.kind == k for r in rows), "bytes": total_size(r for r in rows if r.kind == k)}
                        for k in sorted({r.kind for r in rows})}}


def _matches(row: CacheRow, filters: dict[str, str], now: float) -> bool:
    for name, value in filters.items():
        if name == "until" and not row.created < now - parse_duration(value, what="until filter"):
            return False
        if name == "unused-for" and not row.last_used < now - parse_duration(value, what="unused-for filter"):
            return False
        if name == "kind" and row.kind != value.upper():
            return False
        if name == "key" and not row.key.split(":", 1)[-1].startswith(value.split(":", 1)[-1]):
            return False
    return True


def prune_cache(root: str | os.PathLike[str], *, keep_storage: str | None = None, keep_duration: str | None = None,
                filters: Iterable[str] | None = None, now: float | None = None, dry_run: bool = False) -> PruneResult:
    """Remove cache entries by policy: those matching every `--filter`; of those, the ones unused for
    longer than `keep_duration`; then least recently used until the cache fits in `keep_storage`.
    With only filters, every matching entry goes."""
    now = time.time() if now is None else now
    wanted = parse_filters(filters)
    limit = parse_bytes(keep_storage, where="--keep-storage: ") if keep_storage else None
    max_age = parse_duration(keep_duration, what="--keep-duration") if keep_duration else None
    rows = cache_rows(root)
    candidates = [r for r in rows if _matches(r, wanted, now)]
    reasons: dict[str, str] = {}
    if max_age is None and limit is None:
        reasons = {r.key: "matches the filters" for r in candidates}
    if max_age is not None:
        for r in candidates:
            if r.last_used < now - max_age:
                reasons[r.key] = f"unused for {_ago(r.last_used, now)[:-4]}"
    if limit is not None:
        kept = [r for r in rows if r.key not in reasons]
        for r in sorted((r for r in candidates if r.key not in reasons), key=lambda r: (r.last_used, r.key)):
            if total_size(kept) <= limit:
                break
            reasons[r.key] = f"least recently used (over {human_size(limit)})"
            kept = [k for k in kept if k.key != r.key]
    cache = BuildCache(root)
    removed = tuple(r for r in rows if r.key in reasons)
    for r in removed if not dry_run else ():
        cache.remove(r.key)
    kept_layers = {r.layer_digest for r in rows if r.key not in reasons}
    freed = total_size(r for r in removed if r.layer_digest not in kept_layers)
    return PruneResult(removed, freed, len(rows) - len(removed), reasons)


def add_prune_options(p: argparse.ArgumentParser) -> None:
    """The build-cache policy options of `pybuild prune`."""
    g = p.add_argument_group("build cache policies")
    g.add_argument("--keep-storage", metavar="SIZE", help="remove least recently used cache entries until the "
                   "build cache holds at most SIZE (e.g. 5GB)")
    g.add_argument("--keep-duration", metavar="DURATION", help="remove cache entries unused for longer than "
                   "DURATION (e.g. 24h, 7d)")
    g.add_argument("--filter", dest="filters", action="append", metavar="NAME=VALUE",
                   help="only cache entries matching: until=DURATION (created before), unused-for=DURATION, "
                   "kind=RUN|COPY|..., key=PREFIX (repeatable; alone, removes every match)")


def rows_json(rows: list[CacheRow]) -> str:
    from dataclasses import asdict

    return json.dumps([asdict(r) for r in rows], indent=2)
