"""The scanner's fast path (grammar/fastpath.py) must give exactly what the LALR grammar gives.

Every Dockerfile under fixtures/ and three hypothesis corpora (the differential test's random
Dockerfiles and garbage, and one-line instructions shaped to reach every branch of the fast path)
are parsed twice, with the fast path and with every instruction through the LALR parser: the
AST, the JSON view and any error (class, message, line, column, source line, hint) must be equal.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grammar
from grammar import ast, fastpath
from grammar.jsonview import dockerfile_json
from grammar.transform import build_dockerfile

from .conftest import ROOT, all_fixture_dockerfiles
from .test_differential import GARBAGE, VALID_FLAGS, dockerfile_text, flag


def outcome(text: str, fast_path: bool) -> tuple:
    try:
        df = build_dockerfile(text, filename="Dockerfile", fast_path=fast_path)
    except grammar.DockerfileError as exc:
        return ("error", type(exc).__name__, exc.message, exc.filename, exc.line, exc.column,
                exc.source_line, exc.hint)
    return ("ok", df, dockerfile_json(df))


def assert_same(text: str) -> None:
    assert outcome(text, True) == outcome(text, False), f"--- input ---\n{text!r}"


@pytest.mark.parametrize("path", all_fixture_dockerfiles(), ids=lambda p: str(p.relative_to(ROOT / "fixtures")))
def test_fixture_parses_the_same_both_ways(path: Path) -> None:
    assert_same(path.read_bytes().decode("utf-8"))


EXAMPLES = int(os.environ.get("PYBUILD_FUZZ_EXAMPLES", "300"))
SETTINGS = dict(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@settings(**SETTINGS)
@given(dockerfile_text())
def test_random_dockerfiles_parse_the_same_both_ways(text: str) -> None:
    assert_same(text)


@settings(**SETTINGS)
@given(GARBAGE)
def test_random_garbage_parses_the_same_both_ways(text: str) -> None:
    assert_same(text)


# one-line instructions: every keyword, flag shapes, JSON and plain arguments, the characters
# that decide between the fast and the general path (quotes, escapes, `<<`, non-ASCII, blanks)
KEYWORDS = ["FROM", "from", "RUN", "run", "CMD", "ENTRYPOINT", "SHELL", "ENV", "LABEL", "ARG", "COPY",
            "ADD", "EXPOSE", "VOLUME", "USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER", "HEALTHCHECK",
            "Healthcheck", "ONBUILD", "FOO", "R2"]
PIECES = ["a", "b1", "/x/y", "as", "AS", "Stage", "st-1.x", "1bad", "CMD", "NONE", "cmd", "=", "k=v", "=v", "k=",
          '"a b"', "'c'", '"', "'", "\\", "`", "$A", "${B:-c}", "<<EOF", "<<", "--", "--x", "#", "[", "]",
          '["a", "b"]', "[]", '["x"]', "[1]", '["a"', '[""]', '[" "]', '["\\u00a0"]', '["a"] tail', "\u00e9",
          "\xa0", "\x1c", "8080/tcp", "1:2"]
BLANKS = [" ", " ", "  ", "\t", "\v", "\f", "\r"]
args_text = st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(BLANKS)), min_size=1, max_size=5).map(
    lambda xs: "".join(p + b for p, b in xs))


@st.composite
def one_line(draw) -> str:
    kw = draw(st.sampled_from(KEYWORDS))
    good = VALID_FLAGS.get(kw.upper(), [])
    flags = []
    if draw(st.integers(0, 2)) == 0:
        flags = draw(st.lists(st.sampled_from(good) if good and draw(st.booleans()) else flag, max_size=2))
    lead = draw(st.sampled_from(["", "", " ", "\t", "\xa0"]))
    sep = draw(st.sampled_from([" ", " ", " ", "\t", "  ", "\v", "\x1c"]))
    return lead + kw + sep + "".join(f + " " for f in flags) + draw(args_text).rstrip("\\`")


@st.composite
def one_line_dockerfile(draw) -> str:
    head = draw(st.sampled_from(["", "# escape=`\n", "FROM base\n", "FROM base\n", "ARG V=1\nFROM base\n"]))
    lines = draw(st.lists(one_line(), min_size=1, max_size=6))
    return head + draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"


@settings(**SETTINGS)
@given(one_line_dockerfile())
def test_one_line_instructions_parse_the_same_both_ways(text: str) -> None:
    assert_same(text)


COMMON = [
    "FROM python:3.11-slim AS build", "FROM --platform=$BUILDPLATFORM golang:1.22", "RUN make -j2",
    'RUN ["python3", "-m", "pip", "install", "."]', "RUN --mount=type=cache,target=/root/.cache pip install .",
    'CMD ["app", "--serve"]', 'ENTRYPOINT ["/entrypoint.sh"]', 'SHELL ["/bin/bash", "-c"]',
    'ENV PATH="/opt/venv/bin:$PATH" LANG=C.UTF-8', "ENV A b c", 'LABEL version=1.0 a="b c"',
    "ARG VERSION=1.2.3 OTHER", "COPY --from=build --chown=1000:1000 /src/app /usr/local/bin/app",
    'ADD ["a b", "/c/"]', "EXPOSE 8080/tcp 9090", "VOLUME /data /logs", "USER app:app", "WORKDIR /app",
    "STOPSIGNAL SIGTERM", "MAINTAINER someone", "HEALTHCHECK --interval=30s CMD curl -f http://localhost/",
]
GENERAL = [
    "RUN <<EOF", "COPY <<EOF /x", "RUN --network=bogus x", "COPY --bogus=1 a b", "COPY a", "FROM a b",
    "FROM a AS 1bad", "ENV a", "ENV =b", "ARG =x", 'SHELL echo', "SHELL []", "VOLUME [\"\"]", "RUN [1]",
    "HEALTHCHECK NONE", "HEALTHCHECK CMD []", "ONBUILD RUN x", "FOO bar", "RUN echo \u00e9", "CMD",
    "USER --x a", "WORKDIR --x=1 /a",
]


# lines at the edge between the two paths
EDGES = ["RUN --\techo", "RUN -- echo", "RUN --link\t", "RUN\x1cecho", "RUN\x1c echo", "RUN\vecho \f",
         "USER a --x", "COPY a\x1cb", "EXPOSE 1\x1c 2", "ENV a\x1cb c", "FROM a\x1cAS b", "FROM a As B",
         "RUN echo \\\\", "CMD [\"a\"]\r", "VOLUME [\"\\u00a0\"]", "LABEL a=\"b c\" d='e f'", "ARG a b=",
         "HEALTHCHECK cmd true", "HEALTHCHECK --retries=x CMD true", "STOPSIGNAL --x=1 9"]


# instructions continued over several lines (comment and blank lines inside, flags on later lines)
CONTINUED = ["RUN --mount=type=cache,target=/x \\\n  apt-get install \\\n  curl",
             "COPY \\\n --from=a \\\n  --chown=1 a \\\n  b", "RUN a \\\n# c\n\n  b", "FROM a \\\n AS b",
             "ENV a=1 \\\n  b=\"2 3\"", "RUN --network=bad \\\n x", "RUN x \\\n  <<EOF\nbody\nEOF",
             "EXPOSE 1 \\  \n 2", "CMD [\"a\", \\\n \"b\"]", "ARG a \\\n =b", "RUN a \\",
             # `<<` made by joining the lines: a heredoc (found by the fuzz test at 3000 examples)
             "COPY a <\\\n<EOF /d\nbody\nEOF", "RUN cat <\\\n<EOF\nbody\nEOF", "COPY [\"a\",] <\\\n<EOF\nEOF"]


@pytest.mark.parametrize("text", CONTINUED)
def test_continued_instructions_parse_the_same_both_ways(text: str) -> None:
    assert_same("FROM a\n" + text + "\n")
    assert_same("# escape=`\nFROM a\r\n" + text.replace("\\\n", "`\r\n").replace("\n", "\r\n"))


@pytest.mark.parametrize("line", EDGES)
def test_edge_lines_parse_the_same_both_ways(line: str) -> None:
    assert_same("FROM a\n" + line + "\n")
    assert_same("# escape=`\nFROM a\r\n " + line + "\r\n")


@pytest.mark.parametrize("line", COMMON)
def test_common_lines_take_the_fast_path(line: str) -> None:
    inst = fastpath.instruction(line, line, 2, 1, "\\")
    assert isinstance(inst, ast.Instruction)
    text = "FROM a\n" + line + "\n"
    assert grammar.parse(text).instructions[-1] == build_dockerfile(text, fast_path=False).instructions[-1] == inst


@pytest.mark.parametrize("line", GENERAL)
def test_other_lines_take_the_general_path(line: str) -> None:
    assert fastpath.instruction(line, line, 2, 1, "\\") is None
    assert_same("FROM a\n" + line + "\n")
