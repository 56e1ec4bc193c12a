"""Cache advice from a build record: what a change to each context path costs, and what to fix.

Rebuild cost: a COPY/ADD step's `inputs` part names the table of every context file it read.
Changing a file changes that step's key, and through `parent` (and any part that embeds the
key, such as a stage used as a base) every step after it. The cost of a path is the sum of the
recorded durations of the steps it invalidates (for a step served from cache, the duration its
cache entry recorded when it ran). Suggestions come from the same steps, with Dockerfile lines.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

from builder.cache.keys import BuildCache

SLOW_SECONDS = 1.0  # a RUN worth protecting from broad COPYs

# package managers: (pattern in a RUN, manifests to copy first, cache mount target)
MANAGERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("pip", r"\bpip3? install\b", ("requirements*.txt", "pyproject.toml", "setup.py", "setup.cfg", "poetry.lock"),
     "/root/.cache/pip"),
    ("npm", r"\bnpm (ci|install|i)\b", ("package.json", "package-lock.json", "npm-shrinkwrap.json"), "/root/.npm"),
    ("yarn", r"\byarn( install)?\b", ("package.json", "yarn.lock"), "/usr/local/share/.cache/yarn"),
    ("go", r"\bgo (mod download|build|install)\b", ("go.mod", "go.sum"), "/root/.cache/go-build"),
    ("cargo", r"\bcargo (build|fetch|install)\b", ("Cargo.toml", "Cargo.lock"), "/usr/local/cargo/registry"),
    ("bundler", r"\bbundle install\b", ("Gemfile", "Gemfile.lock"), "/usr/local/bundle/cache"),
    ("composer", r"\bcomposer install\b", ("composer.json", "composer.lock"), "/root/.composer/cache"),
    ("maven", r"\bmvn\b", ("pom.xml",), "/root/.m2"),
    ("apt", r"\bapt-get (-\S+ )*install\b", (), "/var/cache/apt"),
    ("apk", r"\bapk add\b", (), "/var/cache/apk"),
)
# context paths that rarely belong in an image: matched against each path and its parents
IGNORABLE = (".git", ".hg", ".svn", ".github", ".gitlab-ci.yml", ".idea", ".vscode", "__pycache__", "*.pyc",
             ".pytest_cache", ".mypy_cache", ".venv", "venv", "node_modules", ".DS_Store", "*.log", "*.md",
             "docs", "test", "tests", "Dockerfile", "*.Dockerfile", ".dockerignore")


@dataclass(frozen=True, slots=True)
class RebuildCost:
    """A context path (a file, or a directory with everything under it) and what changing it costs."""

    path: str
    files: int
    seconds: float
    steps: tuple[str, ...]  # "line 3: COPY . /app", in build order


@dataclass(frozen=True, slots=True)
class Suggestion:
    line: int
    instruction: str
    kind: str  # copy-order | apt-update | cache-mount | dockerignore | delete-later
    message: str


def step_costs(build: dict[str, Any], cache: BuildCache) -> list[float]:
    """What each step costs to run: its duration on a miss, its cache entry's duration on a hit."""
    out = []
    for s in build.get("steps", []):
        cost = float(s.get("duration", 0.0))
        if s.get("cache") == "hit" and s.get("key"):
            entry = cache.get(s["key"])
            if entry is not None:
                cost = max(cost, float(entry.duration))
        out.append(cost)
    return out


def _invalidated(steps: list[dict[str, Any]], first: int) -> list[int]:
    """Indexes of the steps that a new key for step `first` invalidates (itself included)."""
    dirty = {first}
    keys: set[str] = {k for k in (steps[first].get("key"),) if k}
    for i in range(first + 1, len(steps)):
        parts = json.dumps(steps[i].get("key_parts", []))
        if any(k in parts for k in keys):
            dirty.add(i)
            if steps[i].get("key"):
                keys.add(steps[i]["key"])
    return sorted(dirty)


def _label(step: dict[str, Any]) -> str:
    return f"line {step.get('line', 0)}: {step.get('instruction', '')}"


def files_only(table: dict[str, str]) -> dict[str, str]:
    """A context table without its directory entries (`.` and every path that holds another)."""
    dirs = {"."}
    for path in table:
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            if path in dirs:
                break
            dirs.add(path)
    return {p: c for p, c in table.items() if p not in dirs}


def inputs_of(step: dict[str, Any], cache: BuildCache) -> dict[str, str]:
    """The {context file: checksum} table a COPY/ADD step read ({} if none or no longer cached)."""
    for name, value in step.get("key_parts", []):
        if name == "inputs" and isinstance(value, str):
            return files_only(cache.inputs(value) or {})
    return {}


def _sources_of(step: dict[str, Any]) -> list[str]:
    """Without a per-file table: the context sources the COPY/ADD names (`.`, `src/`, `*.txt`)."""
    for name, value in step.get("key_parts", []):
        if name == "op" and isinstance(value, dict) and "sources" in value and not value.get("from_image"):
            if any(n == "inputs" for n, _ in step.get("key_parts", [])):
                return [str(src) for src in value["sources"]]
    return []


def rebuild_costs(build: dict[str, Any], cache: BuildCache, *, depth: int = 2) -> list[RebuildCost]:
    """The cost of changing each context path, for files and directories down to `depth` levels,
    most expensive first."""
    steps = build.get("steps", [])
    costs = step_costs(build, cache)
    readers: dict[str, set[int]] = {}  # file -> steps it invalidates
    for i, s in enumerate(steps):
        if _from_other(s):  # COPY --from: another stage's or image's files, not context paths
            continue
        files = list(inputs_of(s, cache)) or _sources_of(s)
        if not files:
            continue
        dirty = set(_invalidated(steps, i))
        for f in files:
            readers.setdefault(f, set()).update(dirty)
    groups: dict[str, tuple[int, set[int]]] = {}
    for f, dirty in readers.items():
        parts = f.split("/")
        for d in range(1, min(depth, len(parts)) + 1):
            name = "/".join(parts[:d]) + ("/" if d < len(parts) else "")
            n, acc = groups.get(name, (0, set()))
            groups[name] = (n + 1, acc | dirty)
    out = [RebuildCost(name, n, round(sum(costs[i] for i in dirty), 3), tuple(_label(steps[i]) for i in sorted(dirty)))
           for name, (n, dirty) in groups.items()]
    out.sort(key=lambda c: (-c.seconds, c.path))
    return out


def _ignorable(path: str) -> str | None:
    """The .dockerignore pattern that covers `path`, if it is a kind of file images rarely need."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        for pattern in IGNORABLE:
            if fnmatch.fnmatchcase(part, pattern):
                return "/".join(parts[: i + 1]) if i + 1 < len(parts) or "*" not in pattern else pattern
    return None


def suggestions(build: dict[str, Any], cache: BuildCache) -> list[Suggestion]:
    """Concrete Dockerfile changes, each with the line it is about."""
    steps = build.get("steps", [])
    costs = step_costs(build, cache)
    final_stage = steps[-1].get("stage") if steps else None
    out: list[Suggestion] = []
    for i, s in enumerate(steps):
        text = s.get("instruction", "")
        if s.get("kind") != "RUN":
            continue
        run = text[3:].strip()
        if re.search(r"\bapt-get update\b", run) and not re.search(r"\bapt-get (-\S+ )*install\b", run):
            out.append(Suggestion(s.get("line", 0), text, "apt-update",
                                  "`apt-get update` in a RUN of its own: its cached layer goes stale while later "
                                  "installs reuse it; run `apt-get update && apt-get install -y ...` in one RUN"))
        for name, pattern, manifests, target in MANAGERS:
            if not re.search(pattern, run):
                continue
            if "type=cache" not in run:
                out.append(Suggestion(s.get("line", 0), text, "cache-mount",
                                      f"{name} downloads again on every miss ({costs[i]:.1f}s here): "
                                      f"`RUN --mount=type=cache,target={target} ...` keeps its cache between builds"))
            broad = _broad_copy_before(steps, i)
            found = sorted({f for f in inputs_of(steps[broad], cache)
                            if any(fnmatch.fnmatchcase(f, m) for m in manifests)}) if broad is not None else []
            if broad is not None and manifests and (costs[i] >= SLOW_SECONDS or found):
                present = found or list(manifests[:2])
                dest = steps[broad].get("instruction", "").split()[-1]
                out.append(Suggestion(steps[broad].get("line", 0), steps[broad].get("instruction", ""), "copy-order",
                                      f"this COPY of the whole context comes before `{text}` (line {s.get('line', 0)}, "
                                      f"{costs[i]:.1f}s): any change reruns it. Copy {', '.join(present)} first, run "
                                      f"the install, then copy the rest: `COPY {' '.join(present)} {dest}`"))
            break
    out += _created_then_deleted(steps)
    patterns: dict[str, tuple[int, set[int]]] = {}
    for i, s in enumerate(steps):
        if _from_other(s):
            continue
        files = inputs_of(s, cache)
        for f in files:
            ignorable = _ignorable(f)
            if ignorable is None or (s.get("stage") == final_stage and not _never_needed(ignorable)):
                continue
            n, acc = patterns.get(ignorable, (0, set()))
            patterns[ignorable] = (n + 1, acc | set(_invalidated(steps, i)))
    for pattern, (n, dirty) in sorted(patterns.items(), key=lambda kv: -sum(costs[i] for i in kv[1][1])):
        first = steps[min(dirty)]
        out.append(Suggestion(first.get("line", 0), first.get("instruction", ""), "dockerignore",
                              f"add `{pattern}` to .dockerignore: {n} file{'s' if n != 1 else ''} that never need to "
                              f"reach the image invalidate {len(dirty)} step(s) "
                              f"({sum(costs[i] for i in dirty):.1f}s) when they change"))
    return out


def _from_other(step: dict[str, Any]) -> bool:
    """A COPY/ADD from another stage or an image (`--from=`): what it reads is not the context."""
    return bool(re.match(r"(COPY|ADD)\b.*\s--from[=\s]", step.get("instruction", ""), re.I))


_RM = re.compile(r"\brm\s+(?:-\w+\s+)*((?:[^;&|\s]+\s*)+)")


def _created_then_deleted(steps: list[dict[str, Any]]) -> list[Suggestion]:
    """A file an earlier step of the stage made (downloaded, copied, extracted) and a later RUN
    deletes: the later layer only hides it, the bytes stay in the earlier one."""
    out: list[Suggestion] = []
    for i, s in enumerate(steps):
        if s.get("kind") != "RUN":
            continue
        for m in _RM.finditer(s.get("instruction", "")):
            for path in m.group(1).split():
                name = path.rstrip("/").rsplit("/", 1)[-1]
                if not name or "*" in name or name.startswith("-") or name in (".", "..") or len(name) < 3:
                    continue
                for j in range(i - 1, -1, -1):
                    prev = steps[j]
                    if prev.get("stage") != s.get("stage"):
                        break
                    if prev.get("kind") in ("RUN", "COPY", "ADD") and not prev.get("empty_layer") and \
                            re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", prev.get("instruction", "")):
                        out.append(Suggestion(
                            s.get("line", 0), s.get("instruction", ""), "delete-later",
                            f"`{name}` comes from line {prev.get('line', 0)} (`{prev.get('instruction', '')[:60]}`) "
                            f"and is deleted here, in a later layer: its bytes stay in the image. Create, use and "
                            "delete it in one RUN, use RUN --mount (bind, cache or secret), or a build stage"))
                        break
    return out


def _never_needed(pattern: str) -> bool:
    """Paths no image needs even when copied into the final stage (VCS data, caches, editors)."""
    return pattern.split("/")[0] in (".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".mypy_cache", ".idea",
                                     ".vscode", ".DS_Store") or pattern == "*.pyc"


def _broad_copy_before(steps: list[dict[str, Any]], i: int) -> int | None:
    """The index of a `COPY . DEST` earlier in the same stage as step i, if any."""
    for j in range(i - 1, -1, -1):
        if steps[j].get("stage") != steps[i].get("stage"):
            return None
        words = [w for w in steps[j].get("instruction", "").split() if not w.startswith("--")]
        if words and words[0] in ("COPY", "ADD") and any(w in (".", "./") for w in words[1:-1]):
            return j
    return None


def render_advice(costs: list[RebuildCost], advice: list[Suggestion], *, top: int = 10) -> str:
    """The rebuild-cost table and the suggestions, as `pybuild explain` prints them."""
    lines = []
    if costs:
        lines += ["", "Rebuild cost of a change (steps it invalidates, from recorded durations):",
                  f"  {'CONTEXT PATH':<40} {'FILES':>6} {'COST':>9}  FIRST STEP"]
        for c in costs[:top]:
            lines.append(f"  {c.path:<40} {c.files:>6} {c.seconds:>8.2f}s  {c.steps[0] if c.steps else ''}")
    if advice:
        lines += ["", "Suggestions:"] + [f"  line {s.line}: {s.message}" for s in advice]
    return "\n".join(lines)
