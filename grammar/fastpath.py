"""The scanner's fast path: common instructions built without the LALR parser.

Most instructions are ASCII text without a heredoc, `KEYWORD [--flags] arguments` on one line or
continued over several, where the grammar (grammar/dockerfile.lark) decides nothing but the
argument count. For those, `instruction` builds the very `ast` object that the general path
(scanner tokens, LALR parser, transformer) builds, with the same helpers (lineparsers, flags).
For any other instruction, and for every one the general path would reject, it returns None:
the instruction then takes the general path, which raises the located error.
tests/grammar/test_fastpath.py parses every fixture and hypothesis corpora both ways and
compares the results and the errors.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Protocol

from grammar import ast
from grammar.flags import STAGE_NAME, build_flags, check_healthcheck, check_run_flags
from grammar.lineparsers import (
    WHITESPACE,
    extract_builder_flags,
    go_strip,
    parse_json,
    parse_name_val,
    parse_words,
    split_health,
)


class Span(Protocol):
    """What the fast path needs of a continued instruction's `grammar.lexer.Span` (declared here, so
    that the lexer, which calls the fast path, is not imported back)."""

    end_line: int
    end_col: int

    def at(self, offset: int) -> tuple[int, int]: ...


_HEAD = re.compile(r"([A-Za-z]+)[\t\v\f\r ]+")  # splitCommand's keyword and separator
_SPACE = " \t\n\v\f\r"  # Go's unicode.IsSpace, for ASCII text

Flags = tuple[ast.Flag, ...]
Builder = Callable[[ast.SourceRange, str, Flags, str, str], Optional[ast.Instruction]]


def instruction(text: str, raw: str, line: int, col: int, escape: str,
                span: Span | None = None) -> ast.Instruction | None:
    """The instruction in `text`, or None when it needs the general path.

    `text` is the logical line (continuations joined, leading blanks removed), starting at
    `line`:`col`; `raw` its source text; `escape` the escape character. An instruction that
    continues over several lines comes with its `span` (end, and where each offset of `text`
    is); without one, `text` is all on one line.
    """
    if not text.isascii():
        return None
    body = text.rstrip(_SPACE)
    m = _HEAD.match(body)
    if m is None:
        return None
    keyword = m.group(1).lower()
    build = _BUILDERS.get(keyword)
    if build is None:
        return None
    args = body[m.end():]
    try:
        flags: Flags = ()
        if args.startswith("--"):
            start, found = extract_builder_flags(args)
            if span is None:
                items = [(f, line, col + m.end() + o) for f, o in found]
            else:
                items = [(f, *span.at(m.end() + o)) for f, o in found]
            flags = build_flags(keyword, items)
            args = args[start:].strip(_SPACE)
            if not args:
                return None
        if span is None:
            where = ast.SourceRange(line, col, line, len(raw) + 1)
        else:
            where = ast.SourceRange(line, col, span.end_line, span.end_col)
        return build(where, raw, flags, args, escape)
    except ValueError:  # FlagError, NotStringArray, NameValError: the general path reports it
        return None


def _command(args: str) -> tuple[ast.Command, tuple[str, ...]]:
    """parseMaybeJSON: exec form for a JSON array of strings, else shell form."""
    decoded = parse_json(args)
    if decoded is None:
        return ast.ShellForm(args), (args,)
    return ast.ExecForm(tuple(decoded)), tuple(decoded)


def _run(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Run | None:
    if "<<" in raw or "<<" in args:  # may open heredocs (also `<` + continuation + `<EOF`)
        return None
    if flags:
        check_run_flags(flags)
    command, words = _command(args)
    return ast.Run(rng, raw, flags, words, command)


def _command_builder(cls: type[ast.Cmd] | type[ast.Entrypoint]) -> Builder:
    def build(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Instruction:
        command, words = _command(args)
        return cls(rng, raw, flags, words, command)
    return build


def _shell(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Shell | None:
    decoded = parse_json(args)
    if not decoded:
        return None
    return ast.Shell(rng, raw, flags, tuple(decoded), ast.ExecForm(tuple(decoded)))


def _pairs_builder(cls: type[ast.Env] | type[ast.Label]) -> Builder:
    name = cls.KEYWORD.upper()

    def build(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Instruction | None:
        pairs = parse_name_val(args, name, escape)
        if not pairs or any(k == "" for k, _ in pairs):
            return None
        return cls(rng, raw, flags, tuple(x for pair in pairs for x in pair), tuple(pairs))
    return build


def _arg(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Arg | None:
    words = parse_words(args, escape)
    pairs = []
    for word in words:
        name, eq, default = word.partition("=")
        if eq and name == "":
            return None
        pairs.append((name, default if eq else None))
    if not pairs:
        return None
    return ast.Arg(rng, raw, flags, tuple(words), tuple(pairs))


def _copy_builder(cls: type[ast.Copy] | type[ast.Add]) -> Builder:
    def build(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Instruction | None:
        if "<<" in raw or "<<" in args:  # may open heredocs (also `<` + continuation + `<EOF`)
            return None
        decoded = parse_json(args)
        words = tuple(WHITESPACE.split(args) if decoded is None else decoded)
        if len(words) < 2:
            return None
        return cls(rng, raw, flags, words, words[:-1], words[-1], decoded is not None)
    return build


def _expose(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Expose:
    words = tuple(WHITESPACE.split(args))
    return ast.Expose(rng, raw, flags, words, words)


def _volume(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Volume | None:
    decoded = parse_json(args)
    words = tuple(WHITESPACE.split(args) if decoded is None else decoded)
    if not words or any(go_strip(w) == "" for w in words):
        return None
    return ast.Volume(rng, raw, flags, words, words, decoded is not None)


def _text_builder(cls: type[ast.User] | type[ast.Workdir] | type[ast.Stopsignal] | type[ast.Maintainer]) -> Builder:
    def build(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Instruction:
        return cls(rng, raw, flags, (args,), args)
    return build


def _from(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.From | None:
    words = WHITESPACE.split(args)
    alias = None
    if len(words) == 3 and words[1].lower() == "as":
        alias = words[2].lower()
        if not STAGE_NAME.match(alias):
            return None
    elif len(words) != 1:
        return None
    platform = next((f.value for f in reversed(flags) if f.name == "platform"), None)
    return ast.From(rng, raw, flags, tuple(words), words[0], alias, platform)


def _healthcheck(rng: ast.SourceRange, raw: str, flags: Flags, args: str, escape: str) -> ast.Healthcheck | None:
    kind, rest = split_health(args)
    if kind.upper() != "CMD" or not rest:
        return None
    check_healthcheck({f.name: f.value or "" for f in flags})
    command, words = _command(rest)
    if not words:
        return None
    return ast.Healthcheck(rng, raw, flags, (kind, *words), "CMD", command)


_BUILDERS: dict[str, Builder] = {
    "from": _from,
    "run": _run,
    "cmd": _command_builder(ast.Cmd),
    "entrypoint": _command_builder(ast.Entrypoint),
    "shell": _shell,
    "env": _pairs_builder(ast.Env),
    "label": _pairs_builder(ast.Label),
    "arg": _arg,
    "copy": _copy_builder(ast.Copy),
    "add": _copy_builder(ast.Add),
    "expose": _expose,
    "volume": _volume,
    "user": _text_builder(ast.User),
    "workdir": _text_builder(ast.Workdir),
    "stopsignal": _text_builder(ast.Stopsignal),
    "maintainer": _text_builder(ast.Maintainer),
    "healthcheck": _healthcheck,
}
