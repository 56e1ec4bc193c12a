"""Why each step of a build missed the cache, found by diffing key parts with an earlier build.

Build records (docs/build-records.md) keep every step's `key_parts`. A build is compared with
the closest earlier build of the same Dockerfile (`earlier_builds`), step by step on
`(platform, stage, index)` (or on the instruction when steps were inserted or removed; a
multi-platform build's steps share their stages' indexes, the platform tells them apart); the parts that
differ name the cause: `inputs` (the file tables behind them are diffed file by file),
`build_args`, `base`, `op`, `env`, `user`, ... A step whose only changed part is `parent`
missed because the step before it did. Reads records and cache files only; never writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.build import records
from builder.cache.keys import BuildCache
from builder.errors import BuildError

FILES_SHOWN = 5  # file names listed in one reason before "..."


class NoBuildError(BuildError):
    """No build record matches what was asked for."""


@dataclass(frozen=True, slots=True)
class StepExplanation:
    """One step of a build: what it cost, whether the cache had it and, for a miss, why."""

    id: int
    stage: str
    index: int
    count: int
    line: int
    instruction: str
    cache: str  # hit | miss | none
    duration: float
    reasons: tuple[str, ...]  # empty on a hit
    platform: str = ""  # a multi-platform build's step: the platform it built for

    @property
    def sentence(self) -> str:
        """'COPY . /app missed: 3 files changed (a, b, c)' (or 'RUN make: cache hit')."""
        if self.cache == "hit":
            return f"{self.instruction}: cache hit"
        if self.cache == "none":
            return f"{self.instruction}: nothing to cache"
        return f"{self.instruction} missed: {'; '.join(self.reasons)}"


@dataclass(frozen=True, slots=True)
class BuildExplanation:
    build_id: str
    previous_id: str  # "" when no earlier build of this Dockerfile exists
    dockerfile: str
    status: str
    duration: float
    steps: tuple[StepExplanation, ...]


def load_builds(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every readable build record, oldest first (by start time; unreadable files are skipped)."""
    out = []
    for path in records.list_records(root):
        try:
            out.append(records.load(path))
        except (OSError, ValueError):
            continue
    out.sort(key=lambda b: (float(b.get("started", 0.0)), b.get("id", "")))
    return out


def find_build(builds: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    """The build whose id is `wanted` or starts with it; the latest when `wanted` is None."""
    if not builds:
        raise NoBuildError("no build records yet", hint="run `pybuild build` first; records are kept per store")
    if wanted in (None, "", "last", "latest"):
        return builds[-1]
    found = [b for b in builds if b.get("id", "").startswith(wanted)]
    if len(found) != 1:
        what = "no build" if not found else f"{len(found)} builds"
        raise NoBuildError(f"{what} with id {wanted!r}", hint="`pybuild history --builds` lists them")
    return found[0]


def _same_dockerfile(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two builds of one Dockerfile: the same recorded path; a relative one (`-f Dockerfile` as
    typed) only names a file together with the build's context."""
    path = str(b.get("dockerfile", ""))
    return a.get("dockerfile") == path and (os.path.isabs(path) or a.get("context") == b.get("context"))


def earlier_builds(builds: list[dict[str, Any]], build: dict[str, Any]) -> list[dict[str, Any]]:
    """Earlier builds of the same Dockerfile, closest first: the same target, then the most steps
    whose cache key this build shares, then the most key parts equal step for step (a build-arg,
    a file table, ...), then a finished one, then the most recent."""
    keys = {s.get("key") for s in build.get("steps", []) if s.get("key")}
    mine = {_where(s): _pairs(s.get("key_parts")) for s in _placed(build)}

    def closeness(item: tuple[int, dict[str, Any]]) -> tuple[bool, int, int, bool, int]:
        pos, b = item
        steps = _placed(b)
        parts = sum(mine.get(_where(s), {}).get(k, object()) == v
                    for s in steps for k, v in _pairs(s.get("key_parts")).items())
        return (b.get("target", "") == build.get("target", ""), sum(s.get("key") in keys for s in steps), parts,
                b.get("status") == "ok", pos)

    earlier = [b for b in builds[:builds.index(build)] if _same_dockerfile(b, build)]
    return [b for _, b in sorted(enumerate(earlier), key=closeness, reverse=True)]


def _placed(build: dict[str, Any]) -> list[dict[str, Any]]:
    """A build's steps, each with its platform: its own (a multi-platform build's), else the build's
    one platform, so that a single-platform build's steps pair with the same platform's steps of a
    multi-platform one."""
    platform = str(build.get("platform") or "")
    default = "" if "," in platform else platform
    return [s if s.get("platform") else {**s, "platform": default} for s in build.get("steps", [])]


def _where(step: dict[str, Any]) -> tuple[str, Any, Any]:
    """A step's place: (platform, stage, index); the platform is "" in a single-platform build."""
    return step.get("platform") or "", step.get("stage"), step.get("index")


def _text(step: dict[str, Any]) -> tuple[str, Any, Any]:
    """A step's text in its stage: (platform, stage, instruction)."""
    return step.get("platform") or "", step.get("stage"), step.get("instruction")


def _names(paths: list[str]) -> str:
    shown = ", ".join(sorted(paths)[:FILES_SHOWN])
    return shown + (", ..." if len(paths) > FILES_SHOWN else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _pairs(value: Any) -> dict[str, Any]:
    """[[K, V], ...] (or a dict) as a dict."""
    if isinstance(value, dict):
        return value
    try:
        return {str(k): v for k, v in value or []}
    except (TypeError, ValueError):
        return {}


def _diff_inputs(cache: BuildCache, old: str, new: str) -> list[str]:
    from builder.analyze.advice import files_only

    before, after = cache.inputs(old), cache.inputs(new)
    if before is None or after is None:
        return ["its input files changed (no per-file table was recorded to say which)"]
    before, after = files_only(before), files_only(after)
    changed = [p for p in after if p in before and before[p] != after[p]]
    added = [p for p in after if p not in before]
    removed = [p for p in before if p not in after]
    out = []
    if changed:
        out.append(f"{_count(len(changed), 'file')} changed ({_names(changed)})")
    if added:
        out.append(f"{_count(len(added), 'file')} added ({_names(added)})")
    if removed:
        out.append(f"{_count(len(removed), 'file')} removed ({_names(removed)})")
    return out or ["its input files changed"]


def _diff_kv(label: str, old: Any, new: Any, args: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Changed, added and removed names; names in `args` (given with --build-arg) are build-args."""
    before, after = _pairs(old), _pairs(new)
    out = []
    for k in sorted(set(before) | set(after)):
        label = "build-arg" if k in args else label
        if k not in before:
            out.append(f"{label} {k} added ({after[k]})")
        elif k not in after:
            out.append(f"{label} {k} removed (was {before[k]})")
        elif before[k] != after[k]:
            out.append(f"{label} {k} changed {before[k]} -> {after[k]}")
    return out


def _diff_base(old: Any, new: Any) -> list[str]:
    old, new = old if isinstance(old, dict) else {}, new if isinstance(new, dict) else {}
    if "image" in old and old.get("image") == new.get("image"):
        return [f"base image changed digest ({new['image']}: {old.get('digest', '?')} -> {new.get('digest', '?')})"]
    if "stage" in old and "stage" in new:
        return ["base stage changed"]
    describe = lambda b: b.get("image") or ("scratch" if b.get("scratch") else "a build stage")  # noqa: E731
    return [f"base image changed {describe(old)} -> {describe(new)}"]


def _reasons(step: dict[str, Any], prev: dict[str, Any] | None, cache: BuildCache,
             args: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    if step.get("reason") in ("--no-cache", "--no-cache-filter"):
        return [f"{step['reason']} was given"]
    if prev is None:
        return ["a new step (no earlier build of this Dockerfile had it)"]
    before, after = _pairs(prev.get("key_parts")), _pairs(step.get("key_parts"))
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    out: list[str] = []
    for part in changed:
        if part == "parent":
            continue
        old, new = before.get(part), after.get(part)
        if part == "inputs":
            out += _diff_inputs(cache, str(old), str(new))
        elif part == "build_args":
            out += _diff_kv("build-arg", old, new)
        elif part == "env":  # ARG values reach RUN steps as environment variables
            out += _diff_kv("env", old, new, args)
        elif part == "base":
            out += _diff_base(old, new)
        elif part == "op" and prev.get("instruction") != step.get("instruction"):
            out.append(f"instruction changed: {prev.get('instruction', '?')!r} -> {step.get('instruction', '?')!r}")
        elif part == "op":  # same text, other values (a variable it expands, the WORKDIR it resolves against)
            a, b = (v if isinstance(v, dict) else {} for v in (old, new))
            out += [f"{k} changed {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)] or ["instruction options changed"]
        elif part == "config":
            out.append("its config change is different")
        else:
            out.append(f"{part} changed {json.dumps(old)} -> {json.dumps(new)}")
    if not out and "parent" in changed:
        out.append("parent step missed")
    if not out and prev.get("error"):
        out.append("the same step failed in the earlier build (nothing was cached)")
    if not out:  # same parts, yet a miss: the entry was pruned or lost
        out.append(step.get("reason") or "no cache entry")
        if out[0] == "no cache entry":
            out[0] = "no cache entry for an unchanged key (pruned since the earlier build)"
    return out


def _counterpart(step: dict[str, Any], earlier: list[dict[str, Any]],
                 now_text: set[tuple[str, Any, Any]]) -> dict[str, Any] | None:
    """The step of an earlier build to compare `step` with: the same instruction in the same stage
    if steps were inserted or removed before it, else the one at the same position."""
    here = next((s for s in earlier if _where(s) == _where(step)), None)
    if here is not None and here.get("instruction") == step.get("instruction"):
        return here
    moved = next((s for s in reversed(earlier) if _text(s) == _text(step)), None)
    if moved is not None or here is None:
        return moved
    if _text(here) in now_text:
        return None  # that step is still there, further on: this one was inserted
    return here


def explain_build(root: str | os.PathLike[str], wanted: str | None = None) -> BuildExplanation:
    """Explain every step of a build (the latest by default) against the closest earlier one."""
    builds = load_builds(root)
    build = find_build(builds, wanted)
    ranked = earlier_builds(builds, build)
    prev = ranked[0] if ranked else None
    cache = BuildCache(root)
    args = set(build.get("build_args") or {}) | set((prev or {}).get("build_args") or {})
    by_key = {s.get("key"): s for s in _placed(build) if s.get("key")}
    changed: dict[str, list[str]] = {}  # key -> why it differs from the earlier build's step
    now_text = {_text(s) for s in _placed(build)}

    def counterpart(step: dict[str, Any]) -> dict[str, Any] | None:
        """The step to compare with, in the closest earlier build that has one (a failed build
        stops early; the next closest may have the step)."""
        for earlier in ranked:
            found = _counterpart(step, _placed(earlier), now_text)
            if found is not None:
                return found
        return None

    def why(step: dict[str, Any]) -> list[str]:
        key = step.get("key", "")
        if key not in changed:
            prev_step = counterpart(step)
            same = prev_step is not None and prev_step.get("key") == key and step.get("cache") != "miss"
            changed[key] = [] if same else _reasons(step, prev_step, cache, args)
            parent = by_key.get(_pairs(step.get("key_parts")).get("parent"))
            if changed[key] == ["parent step missed"] and parent is not None and parent.get("cache") != "miss":
                changed[key] = why(parent)  # the parent was served (a FROM), but its key changed: say why
        return changed[key]

    steps = []
    for raw, s in zip(build.get("steps", []), _placed(build)):
        reasons = tuple(why(s)) if s.get("cache") == "miss" else ()
        steps.append(StepExplanation(s.get("id", 0), str(s.get("stage", "")), s.get("index", 0), s.get("count", 0),
                                     s.get("line", 0), s.get("instruction", ""), s.get("cache", "miss"),
                                     float(s.get("duration", 0.0)), reasons, str(raw.get("platform") or "")))
    return BuildExplanation(build.get("id", ""), (prev or {}).get("id", ""), build.get("dockerfile", ""),
                            build.get("status", ""), float(build.get("duration", 0.0)), tuple(steps))


def render_explanation(e: BuildExplanation) -> str:
    """The text `pybuild explain` prints."""
    against = f"compared with build {e.previous_id}" if e.previous_id else "no earlier build of this Dockerfile"
    lines = [f"Build {e.build_id} ({e.status}, {e.duration:.2f}s) of {e.dockerfile}: {against}"]
    for s in e.steps:
        label = f"#{s.id} [{s.platform + ' ' if s.platform else ''}{s.stage} {s.index}/{s.count}]"
        mark = {"hit": "CACHED", "miss": "MISS", "none": "-"}.get(s.cache, s.cache)
        lines.append(f"{label:<20} {s.duration:>8.2f}s  {mark:<6}  line {s.line:<4} {s.instruction}")
        for r in s.reasons:
            lines.append(f"{'':<20} {'':>9}  {'':<6}  -> {r}")
    misses = [s for s in e.steps if s.cache == "miss"]
    if misses:
        lines += ["", "Misses:"] + [f"  {s.sentence}" for s in misses]
    return "\n".join(lines)


def explanation_json(e: BuildExplanation) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(e)
    for step, s in zip(data["steps"], e.steps):
        step["sentence"] = s.sentence
        step["reasons"] = list(s.reasons)
    return data


def build_summaries(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One row per build for `history --builds`: id, when, how long, hits and misses, tags."""
    out = []
    for b in load_builds(root):
        steps = b.get("steps", [])
        out.append({
            "id": b.get("id", ""), "started": b.get("started", 0.0), "duration": b.get("duration", 0.0),
            "status": b.get("status", ""), "dockerfile": b.get("dockerfile", ""), "tags": b.get("tags", []),
            "steps": len(steps), "hits": sum(s.get("cache") == "hit" for s in steps),
            "misses": sum(s.get("cache") == "miss" for s in steps), "image_id": b.get("image_id", ""),
            "step_list": [{"id": s.get("id", 0), "instruction": s.get("instruction", ""), "cache": s.get("cache", ""),
                           "duration": float(s.get("duration", 0.0))} for s in steps],
        })
    return out


def render_build_summaries(rows: list[dict[str, Any]]) -> str:
    import time

    lines = [f"{'BUILD':<32} {'STARTED (UTC)':<20} {'DURATION':>9} {'STATUS':<9} {'HITS':>5} {'MISSES':>6}  TAGS"]
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started"])) if r["started"] else "-"
        lines.append(f"{r['id']:<32} {when:<20} {r['duration']:>8.2f}s {r['status']:<9} {r['hits']:>5} "
                     f"{r['misses']:>6}  {', '.join(r['tags']) or '-'}")
        for s in r["step_list"]:
            mark = {"hit": "CACHED", "miss": "MISS"}.get(s["cache"], "-")
            lines.append(f"  #{s['id']:<3} {s['duration']:>7.2f}s  {mark:<6}  {s['instruction']}")
    return "\n".join(lines)


def store_root() -> Path:
    """The store root the CLI uses."""
    from builder.util.paths import default_root

    return default_root()


def history_builds(*, json_output: bool = False, last: int | None = None) -> int:
    """What `pybuild history --builds [--json] [-n N]` prints: one row per recorded build, oldest
    first (the last N only with `last`)."""
    rows = build_summaries(store_root())
    if last is not None:
        rows = rows[len(rows) - last:] if last > 0 else []
    print(json.dumps(rows, indent=2) if json_output else render_build_summaries(rows))
    return 0


def build_of_image(builds: list[dict[str, Any]], image_id: str) -> tuple[dict[str, Any] | None, str]:
    """The latest build that made `image_id`, and the platform it made it for when that build was a
    multi-platform one (its `images`); (None, "") without a build record."""
    for b in reversed(builds):
        if b.get("image_id") == image_id:
            return b, ""
        platform = next((p for p, i in (b.get("images") or {}).items() if i == image_id), None)
        if platform is not None:
            return b, platform
    return None, ""


def layer_steps(builds: list[dict[str, Any]], image_id: str) -> dict[str, str]:
    """For the latest build of `image_id`: diff_id -> the step that made that layer, as
    "#5 line 6: RUN make (cached)"; empty without a build record. In a multi-platform build, a
    layer that several platforms' steps made alike (a COPY of the same files) is named by the
    image's platform's step."""
    build, platform = build_of_image(builds, image_id)
    out: dict[str, str] = {}
    for step in sorted((build or {}).get("steps", []), key=lambda s: s.get("platform", "") == platform):
        layer = step.get("layer") or {}
        if layer.get("diff_id") and not step.get("empty_layer", True):
            out[layer["diff_id"]] = (f"#{step.get('id', '?')} line {step.get('line', '?')}: {step.get('instruction', '')}"
                                     f"{' (cached)' if step.get('cache') == 'hit' else ''}")
    return out
