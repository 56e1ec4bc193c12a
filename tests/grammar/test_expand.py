"""Docker's word expansion, table-driven: fixtures/expand/*.txt (`input | expected`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grammar import ExpansionError, expand, expand_heredoc, expand_words

from .conftest import EXPAND


def load(path: Path) -> list[tuple[str, dict[str, str], str, str]]:
    env: dict[str, str] = {}
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[4:].partition("=")
            env[key] = value
            continue
        assert line.count(" | ") == 1, f"{path.name}:{n}: want exactly one ' | '"
        inp, expected = line.split(" | ")
        out.append((f"{path.name}:{n}", dict(env), inp, expected))
    return out


def table(name: str) -> list:
    return [pytest.param(env, inp, exp, id=ident) for ident, env, inp, exp in load(EXPAND / name)]


def _run(fn, inp, env, escape):  # noqa: ANN001, ANN202
    try:
        return fn(inp, env, escape)
    except ExpansionError:
        return "error"


@pytest.mark.parametrize("env,inp,expected", table("expand.txt"))
def test_expand(env: dict, inp: str, expected: str) -> None:
    assert _run(expand, inp, env, "\\") == expected


@pytest.mark.parametrize("env,inp,expected", table("backtick.txt"))
def test_expand_backtick_escape(env: dict, inp: str, expected: str) -> None:
    assert _run(expand, inp, env, "`") == expected


@pytest.mark.parametrize("env,inp,expected", table("words.txt"))
def test_expand_words(env: dict, inp: str, expected: str) -> None:
    got = _run(expand_words, inp, env, "\\")
    assert (got if got == "error" else ",".join(got)) == expected


def test_tables_are_not_trivial() -> None:
    rows = load(EXPAND / "expand.txt")
    assert len(rows) > 100
    assert sum(1 for r in rows if r[3] == "error") > 15


def test_expansion_error_message_names_the_word() -> None:
    with pytest.raises(ExpansionError) as info:
        expand("a${EMPTY:?must be set}", {"EMPTY": ""})
    assert "EMPTY: must be set" in str(info.value) and "a${EMPTY:?must be set}" in str(info.value)


def test_bad_escape_character_rejected() -> None:
    with pytest.raises(ValueError):
        expand("x", {}, escape="!")


def test_unclosed_brace_says_missing_brace() -> None:
    # Go says "unsupported modifier (\ufffd) in substitution" here (its EOF rune printed)
    with pytest.raises(ExpansionError, match=r"missing '\}'"):
        expand("/opt/${APP", {"APP": "x"})


@pytest.mark.parametrize("body,expected", [
    # BuildKit's integration tests (testCopyHeredocSpecialSymbols, testHeredocVarSubstitution)
    ('"quotes in file"\n', '"quotes in file"\n'),
    ("\\\n", "\n"),
    ("\\\\\n", "\\\n"),
    ("\\$\n", "$\n"),
    ("Hello ${name}!\n", "Hello world!\n"),
    ("Hello '${name}'!\n", "Hello 'world'!\n"),
    ('Hello "${name}"!\n', 'Hello "world"!\n'),
    ('{"a": "$name", \'b\': `x`}\n', '{"a": "world", \'b\': `x`}\n'),
])
def test_copy_heredoc_body_keeps_quotes(body: str, expected: str) -> None:
    assert expand_heredoc(body, {"name": "world"}) == expected


@pytest.mark.parametrize("word,env,hint", [
    ("${A:?}", {}, "give A a value: ARG A=..."),
    ("${A:?must be set}", {"A": ""}, "give A a value"),
    ("${A", {}, "close the ${...} with '}'"),
    ("${}", {}, "write $NAME or ${NAME}"),
    ("${A:x}", {}, "${V:-word}"),
    ('"abc', {}, "close the quote"),
    ("${A#\\x}", {"A": "1"}, "only \\*, \\? and \\\\ are escapes"),
])
def test_expansion_errors_have_hints(word: str, env: dict, hint: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(word, env)
    assert hint in (info.value.hint or "")
