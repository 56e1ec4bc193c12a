"""`--progress=plain` reads like `docker buildx build --progress=plain`: the [internal] loads, the
resolved FROM, the `exporting to image` block, and the total time at the end."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from builder.util.progress import JsonProgress, PlainProgress
from tests.conftest import pybuild
from tests.e2e.conftest import step_no


def _blocks(out: str) -> dict[int, list[str]]:
    blocks: dict[int, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"#(\d+) (.*)", line)
        if m:
            blocks.setdefault(int(m.group(1)), []).append(m.group(2))
    return blocks


def test_plain_progress_is_buildkits(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    text = "ARG BASE=busybox\nFROM ${BASE} AS gen\nRUN echo hi > /x\nFROM busybox\nCOPY --from=gen /x /x\n"
    (ctx / "Dockerfile").write_text(text)
    (ctx / ".dockerignore").write_text("*.tmp\n")
    out = pybuild("build", "--progress=plain", "-t", "prog:1", str(ctx), env=store).stderr
    b = _blocks(out)
    assert b[1] == ["[internal] load build definition from Dockerfile", f"transferring dockerfile: {len(text)}B done",
                    "DONE 0.0s"]
    assert b[2] == ["[internal] load .dockerignore", "transferring context: 6B done", "DONE 0.0s"]
    assert b[3][0] == "[internal] load metadata for docker.io/library/busybox:latest"
    assert re.fullmatch(r"\[gen 1/2\] FROM docker\.io/library/busybox:latest@sha256:[0-9a-f]{64}", b[4][0]), b[4]
    assert b[5][0] == "[gen 2/2] RUN echo hi > /x"
    assert b[7][0] == "[stage-1 2/2] COPY --from=gen /x /x"
    assert b[8][:3] == ["exporting to image", "exporting layers done", b[8][2]]
    assert re.fullmatch(r"writing image sha256:[0-9a-f]{64} done", b[8][2])
    assert b[8][3] == "naming to docker.io/library/prog:1 done" and b[8][4].startswith("DONE ")
    assert re.search(r"\n\[\+\] Building \d+\.\d+s \(8/8\) FINISHED\n$", out), out[-200:]
    again = pybuild("build", "--progress=plain", "-t", "prog:1", str(ctx), env=store).stderr  # the no-op memo
    assert _blocks(again)[3][0] == b[3][0] and _blocks(again)[8][:4] == b[8][:4]
    assert "(8/8) FINISHED" in again


def test_json_progress_has_status_lines_and_a_finish(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    out = pybuild("build", "--progress=json", "--no-cache", str(ctx), env=store).stderr
    events = [json.loads(line) for line in out.splitlines()]
    assert {"event": "status", "step": 1, "text": "transferring dockerfile: 22B done"}.items() <= events[1].items()
    assert events[-1]["event"] == "finished" and events[-1]["steps"] == 6


def test_a_failed_and_a_cancelled_step_end_the_summary() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    p.start(1, "[1/2] RUN false")
    p.error(1, "exit code 1")
    p.start(2, "[2/2] RUN sleep 9")
    p.error(2, "cancelled")
    p.close()
    lines = out.getvalue().splitlines()
    assert "#2 CANCELED" in lines and "#1 ERROR: exit code 1" in lines
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(0/2\) CANCELED", lines[-1])
    quiet = io.StringIO()
    PlainProgress(quiet).close()
    JsonProgress(quiet).close()
    assert quiet.getvalue() == ""  # no step, no summary


def test_load_build_context_reports_the_bytes_read_once(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY big small /d/\nCOPY small /e\n")
    (ctx / "big").write_bytes(b"x" * 12345)
    (ctx / "small").write_bytes(b"y" * 10)
    (ctx / "ignored").write_bytes(b"z" * 99999)
    out = pybuild("build", "--progress=plain", str(ctx), env=store).stderr
    n = step_no(out, "[internal] load build context")
    assert f"#{n} transferring context: 12.36kB done" in out  # 12355 bytes: big + small, each once
    assert n < step_no(out, "[2/3] COPY big small /d/")


def test_a_runs_stdout_and_stderr_stay_in_the_order_written(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n"
                                    "RUN for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done\n")
    out = pybuild("build", "--progress=plain", "--no-cache", str(ctx), env=store).stderr
    n = step_no(out, "[2/2] RUN")
    lines = [m.group(1) for m in re.finditer(rf"^#{n} \d+\.\d+ ((?:out|err)\d)$", out, re.M)]
    assert lines == [f"{s}{i}" for i in range(1, 9) for s in ("out", "err")], lines
