"""Heredoc openers (`<<EOF`, `<<-EOF`, `3<<"EOF"`) found in a RUN/COPY/ADD line.

The body of a heredoc ends at a line equal to its word, so it cannot be described by the LALR
grammar; the line scanner (grammar/lexer.py) reads bodies with these helpers, as BuildKit does.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from grammar.errors import ExpansionError
from grammar.shell_lexer import Lexer

_OPENER = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")  # Go's \d is ASCII
_EMPTY: dict[str, str] = {}
# characters that make the shell lexer do more than split on blanks (non-ASCII: unicode blanks)
_SPECIAL = re.compile(r"[^\x21-\x7e]|['\"\\$`]")
_SPECIAL_LINE = re.compile(r"[^\x20-\x7e\t]|['\"\\$]|<<[ \t\r]")


class Opener(NamedTuple):
    name: str
    fd: int
    chomp: bool
    expand: bool


def parse_opener(word: str) -> Opener | None:
    """ParseHeredoc: the heredoc a word opens, or None. Raises ExpansionError on bad quoting."""
    m = _OPENER.match(word)
    if not m:
        return None
    fd = int(m.group(1)) if m.group(1) else 0
    chomp = m.group(2) == "-"
    rest = m.group(3)
    if not rest:
        return None
    if not _SPECIAL.search(rest):  # a plain word: the lexer would return it unchanged
        return Opener(rest, fd, chomp, True)
    words = Lexer(rest, _EMPTY, "\\", skip_unset_env=True).run()[1]
    if len(words) != 1:
        return None
    raw_words = Lexer(rest, _EMPTY, "\\", raw_quotes=True, skip_unset_env=True).run()[1]
    word0, raw0 = words[0], raw_words[0]
    expand = (word0.count("'") + word0.count('"')) == (raw0.count("'") + raw0.count('"'))
    return Opener(word0, fd, chomp, expand)


def openers_in_line(line: str) -> list[Opener]:
    """heredocsFromLine: every heredoc opened on a logical line, in order."""
    if not _SPECIAL_LINE.search(line):  # no quotes, escapes, `$` or `<<` + blank: plain splitting
        return [op for op in map(parse_opener, line.split()) if op is not None]
    return openers_lexed(line)


def openers_lexed(line: str) -> list[Opener]:
    """openers_in_line through the shell lexer, as BuildKit does (the general case)."""
    try:
        words = Lexer(line, _EMPTY, "\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True).run()[1]
    except ExpansionError:
        return []
    found = []
    for w in words:
        op = parse_opener(w)
        if op is not None:
            found.append(op)
    return found
