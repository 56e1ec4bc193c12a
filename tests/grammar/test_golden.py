"""Golden directories: fixtures/dockerfiles/<case>/{Dockerfile,expected.json} and
fixtures/dockerfiles-invalid/<case>/{Dockerfile,expected.err} (error class, then the rendering)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import grammar
from grammar.jsonview import dockerfile_json

from .conftest import INVALID, VALID, cases


@pytest.mark.parametrize("case", cases(VALID), ids=lambda p: p.name)
def test_valid(case: Path) -> None:
    df = grammar.parse_file(case / "Dockerfile")
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    assert dockerfile_json(df) == expected


@pytest.mark.parametrize("case", cases(INVALID), ids=lambda p: p.name)
def test_invalid(case: Path) -> None:
    text = (case / "Dockerfile").read_bytes().decode("utf-8")
    cls_name, rendered = (case / "expected.err").read_text(encoding="utf-8").split("\n", 1)
    with pytest.raises(grammar.DockerfileError) as info:
        grammar.check_instructions(grammar.parse(text, filename="Dockerfile"))
    assert type(info.value).__name__ == cls_name
    assert info.value.render() + "\n" == rendered


def test_every_case_has_its_expected_file() -> None:
    assert len(cases(VALID)) >= 20 and len(cases(INVALID)) >= 40
    for case in cases(VALID):
        assert (case / "expected.json").is_file(), case.name
    for case in cases(INVALID):
        assert (case / "expected.err").is_file(), case.name


def test_docker_test_cases_from_the_issue_are_errors() -> None:
    """Empty files, comment-only files, ENV without a value and nested JSON: errors as in Docker."""
    for name in ("empty", "only-comments", "env-no-value", "nested-json"):
        assert (INVALID / name / "expected.err").is_file(), name
