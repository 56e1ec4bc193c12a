"""`pybuild parse [--json] DOCKERFILE`, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import pybuild

from .conftest import VALID

SAMPLE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS build
RUN --mount=type=cache,target=/root/.cache \\
    echo one \\
    && echo two
RUN <<-EOF
\techo heredoc
\tEOF
COPY ["a b", "/dest/"]
ENV A=1 B="two words"
ONBUILD RUN echo later
HEALTHCHECK CMD ["true"]
CMD
FRM typo
"""


def test_json_has_the_documented_shape(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text(SAMPLE)
    doc = json.loads(pybuild("parse", "--json", str(p)).stdout)
    assert doc["directives"] == {"escape": "\\", "syntax": "docker/dockerfile:1"}
    insts = doc["instructions"]
    assert [i["keyword"] for i in insts] == ["arg", "from", "run", "run", "copy", "env", "onbuild",
                                            "healthcheck", "cmd", "frm"]
    for inst in insts:
        assert set(inst) == {"keyword", "line", "end_line", "flags", "form", "args", "pairs", "heredocs",
                             "trigger"}
    run = insts[2]
    assert (run["line"], run["end_line"]) == (4, 6)
    assert run["flags"] == ["--mount=type=cache,target=/root/.cache"]
    assert run["form"] == "shell" and run["args"] == ["echo one     && echo two"]
    heredoc = insts[3]
    assert (heredoc["line"], heredoc["end_line"]) == (7, 9)
    assert heredoc["heredocs"] == [{"name": "EOF", "content": "\techo heredoc\n", "expand": True,
                                    "chomp": True, "fd": 0}]
    assert insts[4]["form"] == "exec" and insts[4]["args"] == ["a b", "/dest/"]
    assert insts[5]["pairs"] == [["A", "1"], ["B", '"two words"']]
    assert insts[6]["trigger"]["keyword"] == "run" and insts[6]["trigger"]["args"] == ["echo later"]
    assert insts[7]["args"] == ["CMD", "true"] and insts[7]["form"] == "exec"
    assert insts[8]["form"] is None and insts[8]["args"] == []
    assert insts[9]["args"] == ["typo"]  # unknown instructions are kept, as Docker's parser does


def test_stdin_and_outline() -> None:
    out = pybuild("parse", "-", input=SAMPLE.encode()).stdout
    assert "stage 0 build: $BASE" in out
    assert "RUN --mount=type=cache,target=/root/.cache echo one" in out
    assert "trigger: RUN echo later" in out
    assert "FRM typo  (unknown instruction)" in out


def test_every_golden_case_round_trips_through_the_cli() -> None:
    case = VALID / "heredocs"
    got = json.loads(pybuild("parse", "--json", str(case / "Dockerfile")).stdout)
    assert got.pop("errors") == []
    assert got == json.loads((case / "expected.json").read_text())


def test_error_is_located_with_a_caret_and_no_traceback(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text("FROM busybox\nRUN true\nCOPY --form=build /a /b\n")
    proc = pybuild("parse", str(p), check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[:3] == [
        f"{p}:3:6: unknown flag: --form (did you mean --from?)",
        "  COPY --form=build /a /b",
        "       ^",
    ]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    proc = pybuild("parse", str(tmp_path / "nope"), check=False)
    assert proc.returncode != 0 and "No such file" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "Dockerfile"
    empty.write_text("# only a comment\n")
    proc = pybuild("parse", "--json", str(empty), check=False)
    assert proc.returncode == 1 and "file with no instructions" in proc.stderr


def test_non_utf8_is_located_the_same_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    data = b"FROM busybox\nLABEL maintainer=\"Jos\xe9\"\n"  # Latin-1
    p = tmp_path / "Dockerfile"
    p.write_bytes(data)
    from_file = pybuild("parse", str(p), check=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    from_stdin = subprocess.run([sys.executable, "-m", "builder", "parse", "-"], input=data, capture_output=True,
                                env=env, timeout=60)
    stdin_err = from_stdin.stderr.decode()
    for rc, err, name in ((from_file.returncode, from_file.stderr, str(p)), (from_stdin.returncode, stdin_err, "-")):
        assert rc == 1 and "Traceback" not in err
        assert err.splitlines()[0] == f"{name}:2:22: invalid UTF-8 (byte 0xe9)"
        assert err.splitlines()[2] == " " * 23 + "^" and "iconv" in err
