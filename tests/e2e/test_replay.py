"""The replay of a no-op rebuild (builder/cache/memo.py): a command line whose build was a no-op is
finished before argparse is imported. It must never answer for a build whose inputs changed: each
test changes one input the replay checks only by stat or content, and expects a real rebuild."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from tests.conftest import pybuild

PROFILE = {"PYTHONPROFILEIMPORTTIME": "1"}  # the same environment for every run: it is part of the key


def _replayed(proc_stderr: str) -> bool:
    modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", proc_stderr, re.M))
    assert "builder.cli" in modules
    return "argparse" not in modules


def _build(store: dict[str, str], *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[str, bool]:
    proc = pybuild("build", "-q", *args, env={**store, **PROFILE, **(env or {})}, cwd=cwd)
    return proc.stdout.strip(), _replayed(proc.stderr)


def _settle() -> None:
    time.sleep(1.1)  # a replay record is kept only for context entries older than a second (racily clean)


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str]) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name, text in files.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _new_content(path: Path, text: str) -> None:
    """Same size and mtime as before: only the inode's ctime (and the content) tell."""
    st = path.stat()
    assert len(text) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_replay_shows_and_records_what_the_memo_did(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY a /a\nRUN cat /a > /b\n", {"a": "a\n"})
    _settle()
    first, replayed = _build(store, "-t", "rp:1", str(ctx))
    assert not replayed
    again, replayed = _build(store, "-t", "rp:1", str(ctx))
    assert (again, replayed) == (first, True)
    before = len(list((Path(store["PYBUILD_ROOT"]) / "builds").glob("*.json")))
    assert _build(store, "-t", "rp:1", str(ctx)) == (first, True)
    builds = sorted((Path(store["PYBUILD_ROOT"]) / "builds").glob("*.json"))
    assert len(builds) == before + 1
    record = json.loads(builds[-1].read_text())
    assert record["status"] == "ok" and record["image_id"] == first and record["duration"] >= 0
    assert [s["cache"] for s in record["steps"]] == ["hit"] * 3
    assert record["context"] == str(ctx) and record["tags"] == ["rp:1"]
    history = pybuild("history", "--builds", env=store).stdout
    assert record["id"] in history or record["id"][:15] in history

    # plain progress: the same lines as the memo's own replay (times aside)
    plain = [pybuild("build", "--progress", "plain", "-t", "rp:1", str(ctx), env={**store, **PROFILE})
             for _ in range(3)]
    assert [_replayed(p.stderr) for p in plain] == [False, True, True]
    shown = [re.sub(r"\d+\.\d+s", "T", "\n".join(ln for ln in p.stderr.splitlines() if not ln.startswith("import time:")))
             for p in plain]
    assert shown[0] == shown[1] == shown[2]
    assert "#6 CACHED" in shown[1] and "naming to docker.io/library/rp:1 done" in shown[1]


def test_a_changed_file_is_rebuilt(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY a /a\n", {"a": "one\n"})
    _settle()
    first, _ = _build(store, str(ctx))
    assert _build(store, str(ctx)) == (first, True)
    _new_content(ctx / "a", "two\n")
    _settle()
    second, replayed = _build(store, str(ctx))
    assert second != first and not replayed
    assert _build(store, str(ctx)) == (second, True)


def test_a_new_file_a_wildcard_matches_is_rebuilt(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY */Makefile *.txt /m/\n", {"d1/Makefile": "m1\n", "x.txt": "x\n",
                                                                        "d2/other": "o\n"})
    _settle()
    first, _ = _build(store, str(ctx))
    assert _build(store, str(ctx)) == (first, True)
    (ctx / "d2" / "Makefile").write_text("m2\n")  # in a directory no source matched before
    _settle()
    second, replayed = _build(store, str(ctx))
    assert second != first and not replayed
    (ctx / "y.txt").write_text("y\n")
    _settle()
    third, replayed = _build(store, str(ctx))
    assert third not in (first, second) and not replayed


def test_a_retargeted_symlink_is_rebuilt(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY link/f /f\n", {"a/f": "aa\n", "b/f": "bb\n"})
    (ctx / "link").symlink_to("a")
    _settle()
    first, _ = _build(store, str(ctx))
    assert _build(store, str(ctx)) == (first, True)
    (ctx / "link").unlink()
    (ctx / "link").symlink_to("b")
    _settle()
    second, replayed = _build(store, str(ctx))
    assert second != first and not replayed


def test_a_moved_tag_or_a_changed_dockerfile_or_environment_is_not_replayed(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nARG V\nRUN echo $V > /v\n", {})
    _settle()
    env = {"V": "1"}
    first, _ = _build(store, "--build-arg", "V", "-t", "rp:tag", str(ctx), env=env)
    assert _build(store, "--build-arg", "V", "-t", "rp:tag", str(ctx), env=env) == (first, True)
    other, replayed = _build(store, "--build-arg", "V", "-t", "rp:tag", str(ctx), env={"V": "2"})
    assert other != first and not replayed
    back, replayed = _build(store, "--build-arg", "V", "-t", "rp:tag", str(ctx), env=env)
    assert back == first and not replayed  # rp:tag had moved to `other`: the build tags it again
    pybuild("tag", "busybox", "rp:tag", env=store)
    again, replayed = _build(store, "--build-arg", "V", "-t", "rp:tag", str(ctx), env=env)
    assert again == first and not replayed
    inspect = json.loads(pybuild("inspect", "rp:tag", env=store).stdout)
    assert first in json.dumps(inspect)
    (ctx / "Dockerfile").write_text("FROM busybox\nARG V\nRUN echo $V > /w\n")
    changed, replayed = _build(store, "--build-arg", "V", "-t", "rp:tag", str(ctx), env=env)
    assert changed != first and not replayed


def test_a_replay_recorded_after_a_full_build_shows_what_the_memo_shows(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nWORKDIR /w\nCOPY a .\nRUN cat a > b\n", {"a": "a\n"})
    _settle()

    def plain(extra: dict[str, str]) -> tuple[str, bool]:
        proc = pybuild("build", "--progress", "plain", "-t", "rp:full", str(ctx), env={**store, **PROFILE, **extra})
        text = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:"))
        return re.sub(r"\d+\.\d+s", "T", text), _replayed(proc.stderr)

    cold, replayed = plain({})
    assert not replayed and "RUN cat a > b" in cold and "CACHED" not in cold
    from_full, replayed = plain({})  # the record the cold build left
    assert replayed
    memo_hit, replayed = plain({"OTHER": "1"})  # another environment: the memo's own replay
    assert not replayed
    assert from_full == memo_hit and "#7 CACHED" in memo_hit
