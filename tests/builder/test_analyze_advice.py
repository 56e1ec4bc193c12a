"""Rebuild cost per context path and Dockerfile suggestions, on a build record written here.

    stage "build":  FROM python           line 1   0.0s
                    COPY . /app           line 2   0.5s   reads CONTEXT
                    RUN pip install ...   line 3  12.0s
    stage "final":  FROM busybox          line 5   0.0s
                    RUN apt-get update    line 6   2.0s
                    COPY --from=build /app/out /out   line 7   0.25s (embeds the build stage's last key)
"""

from __future__ import annotations

from pathlib import Path

from builder.analyze.advice import rebuild_costs, suggestions
from builder.cache.keys import BuildCache, CacheKey

CONTEXT = {"requirements.txt": "a", "src/app.py": "b", "src/lib/util.py": "c", "README.md": "d",
           ".git/HEAD": "e", ".git/objects/ab": "f"}


def build_record(root: Path, *, hit_pip: bool = False) -> dict:
    cache = BuildCache(root)
    k1 = CacheKey.make(base={"image": "python:3", "digest": "sha256:1"})
    k2 = CacheKey.make(parent=k1.digest, op={"kind": "COPY"}, inputs=cache.put_inputs(CONTEXT))
    k3 = CacheKey.make(parent=k2.digest, op={"kind": "RUN", "argv": ["pip"]})
    k4 = CacheKey.make(base={"image": "busybox", "digest": "sha256:2"})
    k5 = CacheKey.make(parent=k4.digest, op={"kind": "RUN", "argv": ["apt"]})
    k6 = CacheKey.make(parent=k5.digest, op={"kind": "COPY", "from": k3.digest})
    if hit_pip:
        cache.put(k3, None, duration=12.0)  # what the step cost when it ran
    rows = [("build", 1, "FROM", "FROM python:3", k1, 0.0), ("build", 2, "COPY", "COPY . /app", k2, 0.5),
            ("build", 3, "RUN", "RUN pip install -r requirements.txt", k3, 0.01 if hit_pip else 12.0),
            ("final", 5, "FROM", "FROM busybox", k4, 0.0), ("final", 6, "RUN", "RUN apt-get update", k5, 2.0),
            ("final", 7, "COPY", "COPY --from=build /app/out /out", k6, 0.25)]
    steps = [{"id": n, "stage": st, "index": n, "line": line, "kind": kind, "instruction": text, "key": k.digest,
              "key_parts": k.as_json(), "cache": "hit" if (hit_pip and n == 3) else "miss", "duration": d}
             for n, (st, line, kind, text, k, d) in enumerate(rows, 1)]
    return {"id": "b1", "steps": steps}


def test_rebuild_cost_follows_parents_and_stages(tmp_path: Path) -> None:
    costs = {c.path: c for c in rebuild_costs(build_record(tmp_path), BuildCache(tmp_path))}
    # COPY . /app (0.5) + pip (12.0) + COPY --from (0.25, embeds the pip step's key) = 12.75
    assert costs["src/"].seconds == 12.75 and costs["src/"].files == 2
    assert costs["src/"].steps == ("line 2: COPY . /app", "line 3: RUN pip install -r requirements.txt",
                                   "line 7: COPY --from=build /app/out /out")
    assert costs["src/lib/"].files == 1 and costs["README.md"].seconds == 12.75
    assert set(costs) == {"requirements.txt", "src/", "src/app.py", "src/lib/", "README.md", ".git/", ".git/HEAD",
                          ".git/objects/"}


def test_a_cached_step_costs_what_it_cost_when_it_ran(tmp_path: Path) -> None:
    costs = {c.path: c for c in rebuild_costs(build_record(tmp_path, hit_pip=True), BuildCache(tmp_path))}
    assert costs["src/"].seconds == 12.75


def test_suggestions_name_lines(tmp_path: Path) -> None:
    out = suggestions(build_record(tmp_path), BuildCache(tmp_path))
    kinds = {(s.kind, s.line) for s in out}
    assert kinds == {("cache-mount", 3), ("copy-order", 2), ("apt-update", 6), ("dockerignore", 2)}
    copy = next(s for s in out if s.kind == "copy-order")
    assert "Copy requirements.txt first" in copy.message and "`COPY requirements.txt /app`" in copy.message
    mount = next(s for s in out if s.kind == "cache-mount")
    assert "--mount=type=cache,target=/root/.cache/pip" in mount.message
    ignores = sorted(s.message.split("`")[1] for s in out if s.kind == "dockerignore")
    assert ignores == [".git", "*.md"] or ignores == ["*.md", ".git"]


def test_directory_entries_of_a_table_are_not_files() -> None:
    from builder.analyze.advice import files_only

    table = {".": "d0", "Dockerfile": "f1", "src": "d1", "src/b": "f2", "src/lib": "d2", "src/lib/c": "f3", "empty": "d3"}
    assert files_only(table) == {"Dockerfile": "f1", "src/b": "f2", "src/lib/c": "f3", "empty": "d3"}
