"""`parse --json` is Docker's parser's view: files Docker's parser accepts parse, and what the
instruction-level checks refuse is data (`errors`), while `parse`, `build` and `check` still refuse it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import grammar
from grammar.jsonview import dockerfile_json
from grammar.lenient import parse_lenient
from tests.conftest import pybuild

from .conftest import INVALID, VALID, cases

# the files from the issue: Docker's parser accepts each of them
ACCEPTED = [
    ("cmd-before-from", 'CMD ["x"]\nFROM busybox\n', [(1, 1, "no build stage in current context")],
     [("cmd", 1, ['["x"]']), ("from", 2, ["busybox"])]),
    ("bare-healthcheck", "FROM busybox\nHEALTHCHECK\nRUN true\n",
     [(2, 1, "HEALTHCHECK requires at least one argument")],
     [("from", 1, ["busybox"]), ("healthcheck", 2, []), ("run", 3, ["true"])]),
    ("unknown-flag", "FROM busybox\nCOPY --user=me a b\n", [(2, 6, "unknown flag: --user")],
     [("from", 1, ["busybox"]), ("copy", 2, ["--user=me a b"])]),
    ("flag-without-equals", "FROM busybox\nCOPY --from $x a b\n", [(2, 6, "missing a value on flag: --from")],
     [("from", 1, ["busybox"]), ("copy", 2, ["--from $x a b"])]),
    ("template", "FROM {{ from }}\nRUN make \\\n  all\n", [(1, 9, "FROM requires either one or three arguments")],
     [("from", 1, ["{{ from }}"]), ("run", 2, ["make   all"])]),
    ("unknown-instruction", "FROM busybox\nFOO bar\n", [(2, 1, "unknown instruction: FOO")],
     [("from", 1, ["busybox"]), ("foo", 2, ["bar"])]),
]


@pytest.mark.parametrize(("name", "text", "errors", "outline"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_parse_json_accepts_what_dockers_parser_accepts(name: str, text: str, errors: list, outline: list,
                                                        tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text(text)
    proc = pybuild("parse", "--json", str(p))
    doc = json.loads(proc.stdout)
    assert [(e["line"], e["column"], e["message"]) for e in doc["errors"]] == errors
    assert [(i["keyword"], i["line"], i["args"]) for i in doc["instructions"]] == outline
    with pytest.raises(grammar.DockerfileError):  # what build and check run: they still refuse it
        grammar.check_instructions(grammar.parse(text))


def test_a_refused_instruction_keeps_its_lines_and_the_next_one_parses() -> None:
    df, errors = parse_lenient("FROM a\nCOPY --bad=1 <<EOF /x\nhello\nEOF\nRUN y \\\n  --z\n")
    assert [(type(i).__name__, i.range.start_line, i.range.end_line) for i in df.instructions] == [
        ("From", 1, 1), ("Unknown", 2, 4), ("Run", 5, 6)]
    assert [e.message for e in errors] == ["unknown flag: --bad"]


def test_syntax_errors_still_fail(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text("FROM a\nCOPY <<EOF /x\nno end\n")
    proc = pybuild("parse", "--json", str(p), check=False)
    assert proc.returncode == 1 and "unterminated heredoc" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("case", cases(VALID), ids=lambda p: p.name)
def test_valid_files_parse_the_same_with_no_errors_but_unknown_instructions(case: Path) -> None:
    text = (case / "Dockerfile").read_bytes().decode("utf-8")
    df, errors = parse_lenient(text)
    assert dockerfile_json(df) == dockerfile_json(grammar.parse(text))
    unknown = [i for i in df.walk() if isinstance(i, grammar.ast.Unknown)]
    assert [e.line for e in errors] == [i.range.start_line for i in unknown]


@pytest.mark.parametrize("case", cases(INVALID), ids=lambda p: p.name)
def test_invalid_cases_are_errors_as_data_or_syntax_errors(case: Path) -> None:
    """Every refused golden case: either a syntax error (raised) or the same error as data."""
    text = (case / "Dockerfile").read_bytes().decode("utf-8")
    with pytest.raises(grammar.DockerfileError) as strict:
        grammar.check_instructions(grammar.parse(text))
    try:
        _df, errors = parse_lenient(text)
    except grammar.DockerfileSyntaxError as exc:
        assert not isinstance(exc, grammar.InstructionError)
        assert exc.message == strict.value.message
        return
    assert errors and (errors[0].line, errors[0].message) == (strict.value.line, strict.value.message)
