"""`explain`: build pairs that differ in exactly one input must name exactly that input.

The records are written with the build engine's own `records` and `cache` modules, in the
format of docs/build-records.md, for a three-step Dockerfile:

    FROM busybox:latest
    COPY . /app
    RUN make
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builder.build import records
from builder.analyze.explain import (NoBuildError, build_summaries, explain_build, explanation_json,
                                     render_build_summaries, render_explanation)
from builder.cache.keys import BuildCache, CacheKey

FILES = {"src/app.py": "c1", "src/util.py": "c2", "README.md": "c3", "Makefile": "c4"}


def fake_build(root: Path, *, n: int, files: dict[str, str] = FILES, args: dict[str, str] | None = None,
               digest: str = "sha256:aaa", run: str = "make", hits: int = 0, dockerfile: str = "/ctx/Dockerfile",
               context: str = "/ctx", failed_at: int = 0, dest: str = "/app") -> str:
    """Write the record of one build; steps before index `hits` are cache hits, later ones misses;
    with `failed_at`, that step failed and the build stopped there."""
    args = {"VERSION": "1.2"} if args is None else args
    cache = BuildCache(root)
    k1 = CacheKey.make(base={"image": "busybox:latest", "digest": digest})
    k2 = CacheKey.make(parent=k1.digest, op={"kind": "COPY", "src": ["."], "dest": dest},
                       inputs=cache.put_inputs(files))
    k3 = CacheKey.make(parent=k2.digest, op={"kind": "RUN", "argv": ["/bin/sh", "-c", run]},
                       env=[["PATH", "/bin"]], build_args=sorted([k, v] for k, v in args.items()))
    steps = []
    for i, (key, kind, text) in enumerate([(k1, "FROM", "FROM busybox:latest"), (k2, "COPY", "COPY . /app"),
                                           (k3, "RUN", f"RUN {run}")], 1):
        hit = i <= hits
        steps.append(records.StepRecord(id=i, stage="0", stage_index=0, index=i, count=3, instruction=text, line=i,
                                        end_line=i, kind=kind, key=key.digest, key_parts=key.as_json(),
                                        cache="hit" if hit else "miss", reason="" if hit else "no cache entry",
                                        duration=0.01 if hit else float(i),
                                        error="exit code: 2" if i == failed_at else ""))
        if i == failed_at:
            break
    bid = f"20261123T1800{n:02d}-0000000{n}"
    records.write(root, records.BuildRecord(id=bid, started=time.time(), dockerfile=dockerfile, dockerfile_digest="",
                                            context=context, status="failed" if failed_at else "ok", duration=6.0,
                                            tags=["app:1"],
                                            build_args=args, steps=steps))
    return bid


def misses(root: Path) -> dict[str, tuple[str, ...]]:
    return {s.instruction: s.reasons for s in explain_build(root).steps if s.cache == "miss"}


def test_first_build_has_nothing_to_compare(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    e = explain_build(tmp_path)
    assert e.previous_id == ""
    assert all(s.reasons == ("a new step (no earlier build of this Dockerfile had it)",) for s in e.steps)


def test_changed_files_are_named(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, files={**FILES, "src/app.py": "x", "src/util.py": "y", "README.md": "z"}, hits=1)
    assert misses(tmp_path) == {"COPY . /app": ("3 files changed (README.md, src/app.py, src/util.py)",),
                                "RUN make": ("parent step missed",)}
    e = explain_build(tmp_path)
    assert e.steps[1].sentence == "COPY . /app missed: 3 files changed (README.md, src/app.py, src/util.py)"
    assert e.previous_id == "20261123T180001-00000001"


def test_added_and_removed_files(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    files = {k: v for k, v in FILES.items() if k != "Makefile"} | {"docs/new.md": "n"}
    fake_build(tmp_path, n=2, files=files, hits=1)
    assert misses(tmp_path)["COPY . /app"] == ("1 file added (docs/new.md)", "1 file removed (Makefile)")


def test_changed_build_arg(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, args={"VERSION": "1.3"}, hits=2)
    assert misses(tmp_path) == {"RUN make": ("build-arg VERSION changed 1.2 -> 1.3",)}
    assert explain_build(tmp_path).steps[2].sentence == "RUN make missed: build-arg VERSION changed 1.2 -> 1.3"


def test_changed_base_digest(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, digest="sha256:bbb")
    assert misses(tmp_path) == {"FROM busybox:latest": ("base image changed digest (busybox:latest: sha256:aaa -> "
                                                        "sha256:bbb)",),
                                "COPY . /app": ("parent step missed",), "RUN make": ("parent step missed",)}


def test_changed_instruction(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, run="make all", hits=2)
    assert misses(tmp_path) == {"RUN make all": ("instruction changed: 'RUN make' -> 'RUN make all'",)}


def test_compares_with_the_latest_build_of_the_same_dockerfile(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1, args={"VERSION": "1.0"})
    fake_build(tmp_path, n=2, args={"VERSION": "1.1"}, dockerfile="/other/Dockerfile")
    fake_build(tmp_path, n=3, args={"VERSION": "1.2"}, hits=2)
    assert misses(tmp_path) == {"RUN make": ("build-arg VERSION changed 1.0 -> 1.2",)}
    assert explain_build(tmp_path, "20261123T180001").previous_id == ""


def test_compares_with_the_closest_of_several_earlier_builds(tmp_path: Path) -> None:
    # build 3 is build 1 with one file changed; build 2 (another build-arg) is more recent but farther
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, args={"VERSION": "1.3"}, hits=2)
    fake_build(tmp_path, n=3, files={**FILES, "src/app.py": "x"}, hits=1)
    assert explain_build(tmp_path).previous_id == "20261123T180001-00000001"
    assert misses(tmp_path) == {"COPY . /app": ("1 file changed (src/app.py)",), "RUN make": ("parent step missed",)}


def test_a_relative_dockerfile_path_is_another_file_in_another_context(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1, dockerfile="Dockerfile", context="/project-a")
    fake_build(tmp_path, n=2, dockerfile="Dockerfile", context="/project-b", args={"VERSION": "9"})
    assert explain_build(tmp_path).previous_id == ""
    fake_build(tmp_path, n=3, dockerfile="Dockerfile", context="/project-a", args={"VERSION": "1.3"}, hits=2)
    assert explain_build(tmp_path).previous_id == "20261123T180001-00000001"
    assert misses(tmp_path) == {"RUN make": ("build-arg VERSION changed 1.2 -> 1.3",)}


def test_a_failed_build_is_compared_as_far_as_it_went(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    changed = {**FILES, "src/app.py": "x"}
    fake_build(tmp_path, n=2, files=changed, hits=1, failed_at=2)  # COPY failed: no RUN step recorded
    fake_build(tmp_path, n=3, files=changed, hits=1)
    assert explain_build(tmp_path).previous_id == "20261123T180002-00000002"  # shares the COPY key
    assert misses(tmp_path) == {"COPY . /app": ("the same step failed in the earlier build (nothing was cached)",),
                                "RUN make": ("parent step missed",)}  # RUN compared with build 1, not "new"


def test_same_instruction_text_with_other_values_names_them(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, dest="/srv", hits=1)  # `COPY . $DEST` with another DEST: same text
    assert misses(tmp_path) == {"COPY . /app": ('dest changed "/app" -> "/srv"',), "RUN make": ("parent step missed",)}


def test_unknown_build_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoBuildError, match="no build records yet"):
        explain_build(tmp_path)
    fake_build(tmp_path, n=1)
    with pytest.raises(NoBuildError, match="no build with id 'nope'"):
        explain_build(tmp_path, "nope")


def test_renderings(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    fake_build(tmp_path, n=2, args={"VERSION": "1.3"}, hits=2)
    text = render_explanation(explain_build(tmp_path))
    assert "compared with build 20261123T180001-00000001" in text
    assert "  RUN make missed: build-arg VERSION changed 1.2 -> 1.3" in text
    assert "CACHED" in text and "MISS" in text
    data = explanation_json(explain_build(tmp_path))
    assert data["steps"][2]["reasons"] == ["build-arg VERSION changed 1.2 -> 1.3"]
    rows = build_summaries(tmp_path)
    assert [(r["hits"], r["misses"]) for r in rows] == [(0, 3), (2, 1)]
    table = render_build_summaries(rows)
    assert "20261123T180002-00000002" in table and "app:1" in table
    assert "  #3      3.00s  MISS    RUN make" in table and "  #1      0.01s  CACHED  FROM busybox:latest" in table
    assert rows[1]["step_list"][2] == {"id": 3, "instruction": "RUN make", "cache": "miss", "duration": 3.0}


def test_cli_prints_reasons_costs_and_suggestions(store_root: Path) -> None:
    from tests.conftest import pybuild

    fake_build(store_root, n=1)
    fake_build(store_root, n=2, files={**FILES, "src/app.py": "x"}, hits=1)
    text = pybuild("explain").stdout
    assert "  COPY . /app missed: 1 file changed (src/app.py)" in text
    assert "Rebuild cost of a change" in text and "src/" in text
    data = __import__("json").loads(pybuild("explain", "--json", "20261123T180001").stdout)
    assert data["previous_id"] == "" and data["steps"][1]["cache"] == "miss"
    # COPY (2 s) + RUN (3 s) as recorded by build 1, where both ran
    assert {c["path"]: c["seconds"] for c in data["rebuild_cost"]}["src/"] == 5.0


def test_an_inserted_step_is_new_and_the_steps_after_it_pair_by_instruction(tmp_path: Path) -> None:
    fake_build(tmp_path, n=1)
    cache = BuildCache(tmp_path)
    k1 = CacheKey.make(base={"image": "busybox:latest", "digest": "sha256:aaa"})
    k2 = CacheKey.make(parent=k1.digest, op={"kind": "COPY", "src": ["."], "dest": "/app"},
                       inputs=cache.put_inputs(FILES))
    k_new = CacheKey.make(parent=k2.digest, op={"kind": "RUN", "argv": ["/bin/sh", "-c", "echo hi"]})
    k3 = CacheKey.make(parent=k_new.digest, op={"kind": "RUN", "argv": ["/bin/sh", "-c", "make"]},
                       env=[["PATH", "/bin"]], build_args=[["VERSION", "1.2"]])
    rows = [(k1, "FROM", "FROM busybox:latest", "hit"), (k2, "COPY", "COPY . /app", "hit"),
            (k_new, "RUN", "RUN echo hi", "miss"), (k3, "RUN", "RUN make", "miss")]
    steps = [records.StepRecord(id=i, stage="0", stage_index=0, index=i, count=4, instruction=text, line=i,
                                end_line=i, kind=kind, key=k.digest, key_parts=k.as_json(), cache=c)
             for i, (k, kind, text, c) in enumerate(rows, 1)]
    records.write(tmp_path, records.BuildRecord(id="20261123T180002-00000002", started=time.time(), dockerfile="/ctx/Dockerfile",
                                                dockerfile_digest="", context="/ctx", status="ok", steps=steps))
    assert misses(tmp_path) == {"RUN echo hi": ("a new step (no earlier build of this Dockerfile had it)",),
                                "RUN make": ("parent step missed",)}
