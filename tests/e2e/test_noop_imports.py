"""The cached no-op rebuild stays lean: it recognises an unchanged build before any parse or solve,
so it must never import the parser, the store, the solver, the registry client or progress bars."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import pybuild

# what only a build that does work needs (each costs milliseconds of the no-op's ~100 ms budget)
NEVER = ("lark", "grammar.parser", "builder.store", "builder.build.solver", "builder.build.convert",
         "builder.build.ops", "builder.transfer", "builder.registry", "builder.oci.layer", "http.client", "ssl",
         "dataclasses", "inspect", "concurrent.futures")


def _imported(stderr: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr, re.M)}


def test_the_no_op_rebuild_imports_no_parser_store_solver_or_registry(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a /a\nRUN echo built > /b\n")
    (ctx / "a").write_text("a\n")
    args = ("build", "-q", "-t", "noop:1", str(ctx))
    first = pybuild(*args, env=store).stdout.strip()
    pybuild(*args, env=store)  # the stat cache trusts files only once they are older than the build that saw them
    proc = pybuild(*args, env={**store, "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.stdout.strip() == first
    modules = _imported(proc.stderr)
    assert "builder.cache.memo" in modules and "builder.build.runner" in modules, proc.stderr[-2000:]
    loaded = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER))
    assert not loaded, f"the no-op rebuild imported {loaded}"


# what the replay of a command line seen before (cache/memo.py) does without: ~25 ms of imports
REPLAY_NEVER = NEVER + ("argparse", "pathlib", "re", "json", "typing", "threading", "enum", "builder.build.context",
                        "builder.build.options", "builder.commands._parser", "grammar")


def test_the_replayed_no_op_rebuild_imports_no_parser_pathlib_json_or_re(store: dict[str, str], tmp_path: Path) -> None:
    import time

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a /a\nRUN echo built > /b\n")
    (ctx / "a").write_text("a\n")
    time.sleep(1.1)  # older than a second: a replay record is kept
    env = {**store, "PYTHONPROFILEIMPORTTIME": "1"}  # in every run: the environment is part of the key
    args = ("build", "-q", "-t", "noop:2", str(ctx))
    first = pybuild(*args, env=env).stdout.strip()
    proc = pybuild(*args, env=env)
    assert proc.stdout.strip() == first
    # what pybuild imported: after `site` (whose .pth files, e.g. an editable install's finder, import
    # pathlib and re in some interpreters before pybuild starts)
    modules = _imported(proc.stderr.split("| site\n", 1)[-1])
    assert "builder.cache.memo" in modules and "builder.build.records" in modules, proc.stderr[-2000:]
    assert "builder.util.progress" not in modules  # -q shows nothing
    loaded = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in REPLAY_NEVER))
    assert not loaded, f"the replayed no-op rebuild imported {loaded}"
