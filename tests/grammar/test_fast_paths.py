"""The scanner's fast paths (plain splitting when a line has no quotes or escapes) must give
exactly what the general, character-by-character ports of BuildKit's functions give."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from grammar.heredoc import openers_in_line, openers_lexed
from grammar.lineparsers import extract_builder_flags, extract_flags_by_char, parse_words, parse_words_by_char

PIECES = ["<<", "<<-", "3<<", "EOF", "--", "--a=1", "--b", "-", "=", "x", "ab", "0", " ", "  ", "\t", "'",
          '"', "\\", "`", "$", "${A}", "\u00e9", "\x1c", "\r", "\u2003"]
text = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)
SETTINGS = dict(max_examples=500, derandomize=True, database=None, deadline=None)


@settings(**SETTINGS)
@given(text)
def test_heredoc_openers(line: str) -> None:
    assert openers_in_line("RUN " + line) == openers_lexed("RUN " + line)


@settings(**SETTINGS)
@given(text, st.sampled_from(["\\", "`"]))
def test_parse_words(rest: str, escape: str) -> None:
    assert parse_words(rest, escape) == parse_words_by_char(rest, escape)


@settings(**SETTINGS)
@given(text)
def test_extract_builder_flags(line: str) -> None:
    assert extract_builder_flags(line) == extract_flags_by_char(line)


@pytest.mark.timeout(10)
def test_unclosed_quote_is_linear() -> None:
    """An ENV line with an unclosed quote once made a regex backtrack exponentially."""
    rest = 'A="' + "b " * 5000
    assert parse_words(rest, "\\") == parse_words_by_char(rest, "\\")
    assert grammar.parse("FROM a\nENV " + rest + "\n").stages[0].instructions[0].pairs[0][0] == "A"
