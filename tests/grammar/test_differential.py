"""Differential tests against Docker's own parser (the `dockerfile` package embeds BuildKit
v0.12.5's Go parser) and a cross-check of line ranges against `dockerfile-parse`.

Rules (docs/grammar.md explains each difference):
- Go rejects  -> we reject.
- Go accepts, we reject -> only with InstructionError / InvalidFlagError: the checks Docker makes
  when it turns the parse tree into instructions (argument counts, flags), which the Go parser
  alone does not make.
- both accept -> same instructions: keyword, ONBUILD trigger keyword, JSON form, start and end
  lines, flags, raw argument values and heredocs.
Syntax newer than v0.12.5 (a blank between `<<` and the heredoc word, Dockerfile 1.16) is
excluded from the random corpus and checked to differ on its own fixture.
"""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from pathlib import Path

import dockerfile
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import grammar
from grammar import ast
from grammar.lineparsers import parse_json

from .conftest import ROOT, all_fixture_dockerfiles

# fixture -> why it differs from BuildKit v0.12.5 (a row of docs/grammar.md)
NEWER_SYNTAX = {"heredoc-space": "Dockerfile 1.16: blanks between << and the heredoc word"}
LATER_CHECKS = (grammar.InstructionError, grammar.InvalidFlagError)


def test_reference_parser_is_buildkit_0_12_5_with_heredocs() -> None:
    assert "heredocs" in dockerfile.Command._fields, "need dockerfile>=3.4 (BuildKit v0.12.5)"
    cmds = dockerfile.parse_string("FROM a\nRUN <<EOF\nx\nEOF\n")
    assert cmds[1].heredocs[0].content == "x\n"


def go_parse(text: str):
    try:
        return dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        return exc


def our_parse(text: str):
    try:
        return grammar.parse(text)
    except grammar.DockerfileError as exc:
        return exc


def shape_go(cmds) -> list[tuple]:
    out = []
    for c in cmds:
        value = tuple(c.value)
        effective = (c.sub_cmd or c.cmd or "").lower()
        if effective not in ast.INSTRUCTION_TYPES:  # unknown: Docker keeps no value, [""]
            value = ()
        heredocs = tuple((h.name, h.file_descriptor, h.content) for h in c.heredocs)
        if (c.cmd or "").lower() == "onbuild":
            heredocs = ()  # the package drops the heredocs of an ONBUILD trigger
        out.append(((c.cmd or "").lower(), (c.sub_cmd or "").lower() or None, c.json, c.start_line, c.end_line,
                    tuple(c.flags), value, heredocs))
    return out


def shape_ours(df: ast.Dockerfile) -> list[tuple]:
    out = []
    for inst in df.instructions:
        inner = inst.trigger if isinstance(inst, ast.Onbuild) else inst
        is_json = isinstance(getattr(inner, "command", None), ast.ExecForm) or getattr(inner, "json", False)
        heredocs = tuple((h.name, h.fd, h.content) for h in getattr(inner, "heredocs", ()))
        if isinstance(inst, ast.Onbuild):
            heredocs = ()
        out.append((inst.word.lower() if isinstance(inst, ast.Unknown) else inst.keyword,
                    (inner.word.lower() if isinstance(inner, ast.Unknown) else inner.keyword)
                    if inner is not inst else None,
                    is_json, inst.range.start_line, inst.range.end_line,
                    tuple(f.raw for f in inst.flags), tuple(inner.args), heredocs))
    return out


@contextmanager
def json_tail_ignored():
    """v0.12.5's JSON rule: an array followed by text is still the exec form (json.Decoder);
    since Dockerfile 1.10 it is shell form (docs/grammar.md, row 11; tested in test_api)."""
    import grammar.fastpath
    import grammar.lexer

    old = grammar.lexer.parse_json, grammar.fastpath.parse_json
    grammar.lexer.parse_json = grammar.fastpath.parse_json = functools.partial(parse_json, tail_ok=True)
    try:
        yield
    finally:
        grammar.lexer.parse_json, grammar.fastpath.parse_json = old


def compare(text: str) -> str | None:
    """None when we agree with Docker, else a description of the disagreement."""
    go = go_parse(text)
    with json_tail_ignored():
        ours = our_parse(text)
    if isinstance(go, Exception):
        if not isinstance(ours, Exception):
            return f"Go rejects ({go}), we accept"
        return None
    if isinstance(ours, Exception):
        if isinstance(ours, LATER_CHECKS):
            return None
        return f"Go accepts, we reject with {type(ours).__name__}: {ours.message}"
    a, b = shape_go(go), shape_ours(ours)
    if a != b:
        for x, y in zip(a, b):
            if x != y:
                return f"instruction differs:\n  go:   {x}\n  ours: {y}"
        return f"instruction count differs: go {len(a)}, ours {len(b)}"
    return None


FIXTURES = all_fixture_dockerfiles()


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(ROOT / "fixtures")))
def test_fixture_agrees_with_docker(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    problem = compare(text)
    if path.parent.name in NEWER_SYNTAX:
        assert problem is not None, "expected to differ from v0.12.5: " + NEWER_SYNTAX[path.parent.name]
    else:
        assert problem is None, problem


def test_every_fixture_is_compared() -> None:
    assert len(FIXTURES) >= 70


# ---- random corpora ---------------------------------------------------------------------

_WORD_CHARS = "abcxyz019_-./:@"
_NASTY = ["\\", "`", '"', "'", "$", "${", "}", "{", "[", "]", ",", "=", "#", "<<", "-", " ", "\t",
          "\\ ", '\\"', "$A", "${A:-b}", '"a b"', "'c d'", "--", "--x=1", "EOF"]
word = st.text(_WORD_CHARS, min_size=1, max_size=8)
nasty = st.lists(st.one_of(word, st.sampled_from(_NASTY)), min_size=0, max_size=8).map("".join)
json_array = st.lists(st.one_of(word, nasty), max_size=4).map(
    lambda xs: "[" + ", ".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"' for x in xs) + "]")
broken_json = st.sampled_from(['["a"', '["a", 1]', "[a]", '["a"] tail', "[]", '[["x"]]', '[ "a" , "b" ]',
                               '["a",]', "[null]", '["\\u00e9"]'])

FLAG_NAMES = ["from", "chown", "chmod", "link", "parents", "exclude", "checksum", "keep-git-dir",
              "platform", "mount", "network", "security", "interval", "timeout", "retries",
              "start-period", "bogus"]
FLAG_VALUES = ["", "=", "=x", "=true", "=false", "=0755", "=1:1", "=5s", "=3", "=none",
               "=type=cache,target=/x", '="quoted value"', "=a\\ b", "=type=bind,rw"]
flag = st.builds(lambda n, v: f"--{n}{v}", st.sampled_from(FLAG_NAMES), st.sampled_from(FLAG_VALUES))

VALID_FLAGS = {
    "FROM": ["--platform=linux/amd64", "--platform=$BUILDPLATFORM"],
    "RUN": ["--mount=type=cache,target=/x", "--network=none", "--security=sandbox",
            '--mount="type=bind,source=a b,target=/y"', "--mount=type=secret,id=t"],
    "COPY": ["--from=x", "--chown=1:1", "--chmod=0755", "--link", "--parents", "--exclude=*.tmp"],
    "ADD": ["--chown=app", "--link=true", "--keep-git-dir", "--checksum=sha256:00", "--exclude=a"],
    "HEALTHCHECK": ["--interval=5s", "--retries=3", "--timeout=1m30s", "--start-period=0"],
}
KEYWORDS = ["FROM", "RUN", "CMD", "ENTRYPOINT", "SHELL", "ENV", "LABEL", "ARG", "COPY", "ADD", "EXPOSE",
            "VOLUME", "USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER", "HEALTHCHECK", "ONBUILD", "run",
            "Copy", "FOO", "env"]


@st.composite
def instruction(draw) -> str:
    kw = draw(st.sampled_from(KEYWORDS))
    parts = [kw]
    if kw.upper() == "ONBUILD":
        parts.append(draw(st.sampled_from(KEYWORDS[1:])))
    if kw.upper() == "HEALTHCHECK":
        parts.append(draw(st.sampled_from(["CMD", "NONE", "cmd", "BAD"])))
    good = VALID_FLAGS.get(parts[-1].upper() if kw.upper() == "ONBUILD" else kw.upper(), [])
    flags = st.sampled_from(good) if good and draw(st.integers(0, 3)) else flag
    if good or draw(st.integers(0, 3)) == 0:
        parts += draw(st.lists(flags, max_size=2, unique=True))
    args = draw(st.one_of(json_array, broken_json, st.lists(st.one_of(word, nasty), max_size=4).map(" ".join),
                          st.builds(lambda k, v: f"{k}={v}", word, nasty)))
    parts.append(args)
    line = " ".join(parts)
    heredoc = draw(st.sampled_from([None, None, "EOF", "-EOT", '"Q"', "'S'"]))
    if heredoc and kw.upper() in ("RUN", "COPY", "ADD"):
        line += f" <<{heredoc}"
    # continuation lines, with comments and blank lines inside
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(line)))
        filler = draw(st.sampled_from(["", "# inner comment\n", "\n", "   \n", "  # x\n"]))
        line = line[:cut] + draw(st.sampled_from(["\\\n", "\\  \n", "\\\t\n"])) + filler + line[cut:]
    if heredoc and kw.upper() in ("RUN", "COPY", "ADD"):
        name = heredoc.strip("-\"'")
        body = draw(st.lists(st.one_of(word, nasty, st.just("\t" + name)), max_size=3))
        line += "\n" + "".join(b + "\n" for b in body) + ("\t" if heredoc.startswith("-") else "") + name
    return line


@st.composite
def dockerfile_text(draw) -> str:
    head = draw(st.sampled_from([
        "", "# syntax=docker/dockerfile:1\n", "# escape=`\n", "# escape=\\\n", "\n", "#ESCAPE = `\n",
        "  # escape=`\n", "# unknown=1\n# escape=`\n", "\ufeff# escape=`\n", "# syntax=a\n# syntax=b\n",
        "# escape=`\n# escape=`\n", "# escape=x\n", "#escape=`\r\n", "# comment\n# escape=`\n",
        "# syntax=a\n\n# escape=`\n", "# escape=`\\\n",
    ]))
    lines = ["FROM " + draw(word)] + draw(st.lists(instruction(), min_size=1, max_size=6))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    tail = draw(st.sampled_from(["", "\n", "\\", "\n# end"]))
    return head + sep.join(lines) + tail


def _newer_syntax(text: str) -> bool:
    return re.search(r"<<-?[ \t]", text) is not None


SETTINGS = dict(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@settings(max_examples=int(__import__("os").environ.get("PYBUILD_FUZZ_EXAMPLES", "400")), **SETTINGS)
@given(dockerfile_text())
def test_random_dockerfiles_agree_with_docker(text: str) -> None:
    assume(not _newer_syntax(text))
    problem = compare(text)
    assert problem is None, f"{problem}\n--- input ---\n{text}"


GARBAGE = st.text(st.sampled_from(list("FROMRUNCOPYENVLABELARGonbuild \t\n\r\\`#=\"'[]{}$<-:,/.ab01") + ["\u00e9"]),
                  max_size=120)


@settings(max_examples=int(__import__("os").environ.get("PYBUILD_FUZZ_EXAMPLES", "400")), **SETTINGS)
@given(GARBAGE)
def test_random_garbage_gets_the_same_verdict(text: str) -> None:
    assume(not _newer_syntax(text))
    problem = compare(text)
    assert problem is None, f"{problem}\n--- input ---\n{text!r}"


# ---- dockerfile-parse: instruction boundaries and line ranges ----------------------------------


def _dfp_ranges(text: str) -> list[tuple[str, int, int]]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=__import__("io").BytesIO(text.encode()))
    return [(i["instruction"].lower(), i["startline"] + 1, i["endline"] + 1) for i in parser.structure]


def _dfp_comparable(path: Path) -> bool:
    # dockerfile-parse knows neither heredocs, `# escape=`, comment lines inside continuations
    # nor a byte-order mark; it reports comments as instructions (we drop those rows)
    text = path.read_text(encoding="utf-8", errors="replace")
    return ("<<" not in text and "escape" not in text and not text.startswith("\ufeff")
            and not re.search(r"\\\s*\n\s*(#|\n)", text))


DFP_CASES = [p for p in FIXTURES if _dfp_comparable(p) and "dockerfiles-invalid" not in p.parts]


@pytest.mark.parametrize("path", DFP_CASES, ids=lambda p: str(p.relative_to(ROOT / "fixtures")))
def test_line_ranges_agree_with_dockerfile_parse(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    ours = grammar.parse(text)
    theirs = [r for r in _dfp_ranges(text) if r[0] != "comment"]
    mine = [(i.word.lower() if isinstance(i, ast.Unknown) else i.keyword, i.range.start_line, i.range.end_line)
            for i in ours.instructions]
    assert mine == theirs


def test_dockerfile_parse_cross_check_covers_enough_fixtures() -> None:
    assert len(DFP_CASES) >= 12
