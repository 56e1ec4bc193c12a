"""Cache keys are canonical and stable across processes; entries are atomic and explain themselves."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from builder.cache.keys import BuildCache, CacheKey
from builder.util.progress import JsonProgress, PlainProgress, make_progress
from builder.build.records import BuildRecord, StepRecord, list_records, load, new_build_id, write
from builder.store import Store


def test_key_ignores_part_order_and_none_parts() -> None:
    a = CacheKey.make(op={"kind": "RUN", "argv": ["sh"]}, parent="sha256:1", mounts=None)
    b = CacheKey.make(parent="sha256:1", op={"argv": ["sh"], "kind": "RUN"})
    assert a.digest == b.digest and a.part("parent") == "sha256:1" and a.part("mounts") is None


def test_key_changes_with_any_part() -> None:
    base = CacheKey.make(op="x", parent="p")
    assert CacheKey.make(op="y", parent="p").digest != base.digest
    assert CacheKey.make(op="x", parent="q").digest != base.digest


def test_key_is_the_same_in_another_process() -> None:
    code = "from builder.cache.keys import CacheKey; print(CacheKey.make(op={'é': [1, 2]}, parent='p').digest)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == CacheKey.make(parent="p", op={"é": [1, 2]}).digest


def test_entries_round_trip_and_torn_files_miss(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    key = CacheKey.make(op="x")
    assert cache.get(key) is None
    layer = {"diff_id": "sha256:a", "digest": "sha256:b", "size": 3, "media_type": "m"}
    cache.put(key, layer, 1.5)
    entry = cache.get(key)
    assert entry is not None and entry.layer == layer and entry.parts == [["op", "x"]] and entry.duration == 1.5
    path = next((tmp_path / "cache" / "keys").glob("*/*.json"))
    path.write_text('{"key": "sha256:')
    assert cache.get(key) is None
    path.write_text(json.dumps({"key": "sha256:other", "parts": [], "created": 0}))
    assert cache.get(key) is None
    assert not list((tmp_path / "cache" / "keys").glob("*/.*.tmp"))


def test_inputs_tables_are_content_addressed(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    d = cache.put_inputs({"a.txt": "sha256:1"})
    assert cache.inputs(d) == {"a.txt": "sha256:1"} and cache.put_inputs({"a.txt": "sha256:1"}) == d


def test_records_are_written_and_listed(tmp_path: Path) -> None:
    rec = BuildRecord(new_build_id(), 1.0, "/x/Dockerfile", "sha256:d", "/x")
    rec.steps.append(StepRecord(1, "stage-0", 0, 1, 2, "FROM busybox", 1, 1, "FROM"))
    path = write(tmp_path, rec)
    assert list_records(tmp_path) == [path]
    data = load(path)
    assert data["version"] == 1 and data["steps"][0]["instruction"] == "FROM busybox"


def test_plain_progress_looks_like_buildkit() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    p.start(5, "[build 2/7] RUN make")
    p.output(5, b"compiling\npartial")
    p.done(5)
    p.start(6, "[build 3/7] COPY . .")
    p.cached(6)
    lines = out.getvalue().splitlines()
    assert lines[1] == "#5 [build 2/7] RUN make"
    assert lines[2].startswith("#5 0.") and lines[2].endswith(" compiling")
    assert lines[3].endswith(" partial") and lines[4].startswith("#5 DONE ")
    assert lines[-1] == "#6 CACHED"


def test_json_progress_is_one_event_per_line() -> None:
    out = io.StringIO()
    p = JsonProgress(out)
    p.start(1, "[1/1] FROM busybox")
    p.cached(1)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["start", "cached"] and events[0]["step"] == 1


def test_auto_progress_is_plain_off_a_tty() -> None:
    assert type(make_progress("auto", io.StringIO())) is PlainProgress


_KEYED_DOCKERFILE = """FROM scratch
ARG HTTP_PROXY=http://proxy:3128
ARG V=1
ENV A=1 PATH=/bin
WORKDIR /app
USER 1000:1000
RUN --mount=type=cache,target=/c,id=x,sharing=locked --mount=type=tmpfs,target=/t,size=1m \
 --mount=type=secret,id=s,required=true,target=/run/s --mount=type=bind,source=sub,target=/src echo $V
COPY --chmod=640 --chown=1:2 a.txt sub /app/
COPY --link --exclude=*.md <<EOF /x
hello
EOF
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.com/f.tgz /f
RUN --network=none --security=insecure ["true", "x"]
WORKDIR rel
"""

# The keys the solver made before the operations moved to builder/build/ops (issue 11): a pure
# restructuring keeps every key byte for byte (a changed key silently misses every cached step).
# Issue 16 changed the RUN keys on purpose (and so every key after the first RUN): a RUN's key holds
# the platform it runs for ("platform": "linux/amd64"), so that an arm64 RUN never hits an amd64 one.
_KEYS = [
    ("WORKDIR", "sha256:24f9543ec6630ef3506ce281771947fb60a27f5bbde8170056367a32ab9d7a0a"),
    ("RUN", "sha256:83562325bbd115976376c2f97deb896242dd2e450f6bd1b00f5f265bec86dead"),
    ("COPY", "sha256:b3cd76ab947d0d6241c514163f1010f603fd2ff537ddc28c5fd11b9257425cea"),
    ("COPY", "sha256:065a60c32d92bebcd4c8ba80558ef1d7db0cc4850a40b7dd941e758ddcdb26e4"),
    ("ADD", "sha256:c83f7c51b3f82d5660a727cf2c6ba30cb4a31eba1dcc27972ecbba1771963ce4"),
    ("RUN", "sha256:1e594b4b6f84687dcbbc0c32faf22656b15d6bcc80ed79c3b7955a0a0bc29db1"),
    ("WORKDIR", "sha256:cb94c20d41ea1316f3ca51c40e833e7c1ef2f5a2462543fde044fc918990930e"),
]


def test_step_keys_stay_byte_identical(tmp_path: Path) -> None:
    import os

    from builder.build.context import BuildContext
    from builder.build.convert import Options, convert
    from builder.build.job import BuildJob, SolveOptions, Step
    from builder.build.ops import operation_for
    from builder.util.progress import Progress
    from grammar import parse

    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "a.txt").write_bytes(b"alpha\n")
    (ctx / "sub" / "b.md").write_bytes(b"beta\n")
    (ctx / "sub" / "c").write_bytes(b"gamma\n")
    os.chmod(ctx / "a.txt", 0o644)
    os.chmod(ctx / "sub" / "c", 0o755)
    graph = convert(parse(_KEYED_DOCKERFILE), Options({}, None, "linux/amd64", {}), lambda ref, platform: {})
    store = Store.open(tmp_path / "store")  # keys read nothing from it here (no image, no other stage)
    job = BuildJob(store, BuildCache(tmp_path / "store"), BuildContext(ctx, b"", "Dockerfile"), Progress(),
                   SolveOptions(network="host"), BuildRecord("id", 0.0, "", "", ""), _no_image)
    stage = graph.stages[graph.target]
    parent = CacheKey.make(base={"scratch": True})
    got = []
    for sid, node in enumerate(n for n in stage.nodes if n.makes_layer):
        operation = operation_for(node.op)
        parent = operation.key(job, Step(node, stage, sid, parent, (), {}))
        got.append((operation.kind, parent.digest))
        assert (parent.part("platform") == "linux/amd64") == (operation.kind == "RUN")
    assert got == _KEYS
    assert [r[0] for r in job.reads.reads] == [["sub"], ["a.txt", "sub"]]  # what the no-op memo re-checks


def _no_image(ref: str, platform: str) -> Any:
    raise AssertionError(f"no image is read for a key here, not even {ref}")


def test_layers_travel_typed_and_keep_their_json() -> None:
    from builder.build.job import layer_from_json, layer_json

    d = {"diff_id": "sha256:" + "a" * 64, "digest": "sha256:" + "b" * 64, "size": 3, "media_type": "m"}
    layer = layer_from_json(d)
    assert layer.diff_id == d["diff_id"] and layer.size == 3 and layer_json(layer) == d


def test_job_close_removes_the_step_dirs_a_failure_left(tmp_path: Path) -> None:
    from builder.build.context import BuildContext
    from builder.build.graph import Mkdir, Node, Origin, Scratch, Stage
    from builder.build.job import BuildJob, SolveOptions, Step
    from builder.build.ops.workspace import Workspace
    from builder.util.progress import Progress

    store = Store.open(tmp_path)
    job = BuildJob(store, BuildCache(tmp_path), BuildContext(None, b"", "-"), Progress(), SolveOptions(),
                   BuildRecord("id", 0.0, "", "", ""), _no_image)
    node = Node(Mkdir("/w"), Origin("Dockerfile", 2), "WORKDIR /w", "WORKDIR /w")
    stage = Stage(0, "", Scratch(), Origin("Dockerfile", 1), [node])
    ws = Workspace(job, Step(node, stage, 2, CacheKey.make(base={"scratch": True}), (), {}))
    assert ws.upper.is_dir() and ws.path.parent == tmp_path / "tmp"  # beside the snapshots: renamed into place
    job.close()  # as after Ctrl-C: the step never ended
    assert not ws.path.exists() and not list((tmp_path / "tmp").iterdir())
