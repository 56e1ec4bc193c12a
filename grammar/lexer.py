"""The line scanner that feeds the LALR parser (grammar/dockerfile.lark) its tokens.

Dockerfile lexing depends on state the grammar cannot carry: the escape character chosen by a
directive, continuation lines (with comment and blank lines inside them), and heredoc bodies
whose terminator is the word that opened them. This scanner follows BuildKit's `Parse` loop
for exactly those. An instruction the fast path (grammar/fastpath.py) can build is yielded as
its `ast` object; for any other it hands the grammar one token per syntactic piece:

    FROM RUN ... ONBUILD UNKNOWN   the keyword (data: the instruction's `Span`)
    FLAGS                          the `--name=value` words, quotes removed (data: [(raw, line, col)])
    JSON | TEXT                    exec form (data: the decoded list) | the rest of the line
    WORD AS                        FROM's words
    WORDS | SOURCES DEST           split arguments (data: [(word, line, col)]); COPY/ADD's last
                                   word is DEST, the others SOURCES
    PAIRS                          ENV/LABEL pairs (data: [(key, value, line, col)])
    HC_NONE HC_CMD HC_TYPE         HEALTHCHECK's type word
    HEREDOCS                       the heredocs of the instruction (data: tuple of ast.Heredoc)
    _EOL                           end of an instruction
"""

from __future__ import annotations

import bisect
import re
from typing import Any, Iterator, TypeVar

from grammar import ast
from grammar.directives import DirectiveParser
from grammar.errors import DockerfileError, DockerfileSyntaxError, ExpansionError
from grammar.fastpath import instruction as simple_instruction
from grammar.heredoc import openers_in_line
from grammar.lineparsers import (
    NameValError,
    NotStringArray,
    go_lstrip,
    parse_json,
    parse_name_val,
    parse_words,
    split_command,
    split_health,
    WHITESPACE,
)

KEYWORDS = ("from", "run", "cmd", "entrypoint", "shell", "env", "label", "arg", "copy", "add",
            "expose", "volume", "user", "workdir", "stopsignal", "maintainer", "healthcheck",
            "onbuild")
_HEREDOC_KEYWORDS = ("run", "copy", "add")
_GO_SPACE = "\t\n\v\f\r \x85\xa0"
_E = TypeVar("_E", bound=DockerfileError)


class Tok(str):
    """A token: its text, grammar terminal name, position and payload (decoded JSON, words, ...)."""

    __slots__ = ("type", "value", "line", "column", "data")
    type: str
    value: str
    line: int
    column: int
    data: Any  # depends on `type` (see the module docstring)


class Span:
    """One logical instruction: where it is, its source text, and a logical->physical map."""

    __slots__ = ("start_line", "start_col", "end_line", "end_col", "raw", "head", "offsets", "places")

    def __init__(self, start_line: int, start_col: int) -> None:
        self.start_line, self.start_col = start_line, start_col
        self.end_line = self.end_col = 0
        self.raw = ""
        self.head = 0  # id() of the outer instruction's keyword token (no reference cycle)
        self.offsets: list[int] = []  # logical offset where each physical segment starts
        self.places: list[tuple[int, int]] = []  # (line, col) of that offset

    def at(self, offset: int) -> tuple[int, int]:
        """The physical (line, column) of an offset into the logical line."""
        offsets = self.offsets
        i = 0 if len(offsets) == 1 else bisect.bisect_right(offsets, offset) - 1
        if i < 0:
            return self.start_line, self.start_col
        line, col = self.places[i]
        return line, col + offset - offsets[i]


class Source:
    """The text being parsed, split into physical lines the way Docker's scanner splits it."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.current: list[Tok] = []  # keyword tokens of the instruction being scanned
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = _split_lf(text)  # Docker splits on \n only (CRLF: \r is trimmed per line)

    def line(self, lineno: int) -> str | None:
        if 1 <= lineno <= len(self.lines):
            return self.lines[lineno - 1].rstrip("\r\n")
        return None

    def error(self, cls: type[_E], message: str, line: int, col: int = 0, hint: str | None = None) -> _E:
        return cls(message, filename=self.filename, line=line, column=col,
                   source_line=self.line(line) if col else None, hint=hint)


def _split_lf(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _trim_newline(s: str) -> str:
    return s.rstrip("\r\n")


def _continuation(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"(?:(?<=[^{e}])|(?<!.)){e}[ \t]*\Z", re.S)


_CONT = {"\\": _continuation("\\"), "`": _continuation("`")}


def scan(src: Source, fast_path: bool = True) -> Iterator[Tok | tuple[str, str] | ast.Instruction]:
    """BuildKit's Parse loop, emitting grammar tokens instead of building nodes.

    Yields the directives as (name, value), then per instruction its tokens up to `_EOL`, or,
    for a line that grammar/fastpath.py builds directly (unless `fast_path` is false), the
    `ast.Instruction` itself.
    """
    lines = src.lines
    n = len(lines)
    directives = DirectiveParser()
    escape = "\\"
    cont = _CONT[escape]
    i = 0
    seen_instruction = False
    while i < n:
        physical = lines[i]
        lineno = i + 1
        i += 1
        token = physical.rstrip("\r\n")
        stripped = go_lstrip(token)
        if not stripped:
            if not directives.done:
                directives.feed(stripped, lineno)
            continue
        lead = len(token) - len(stripped)
        found = directives.feed(stripped, lineno) if not directives.done else None
        if found is not None:
            yield found
            if found[0] == "escape":
                escape = found[1]
                cont = _CONT[escape]
            continue
        if stripped[0] == "#":
            continue
        if stripped.rstrip(" \t")[-1] != escape:  # the common case: no continuation
            if fast_path:
                inst = simple_instruction(stripped, token, lineno, lead + 1, escape)
                if inst is not None:
                    seen_instruction = True
                    yield inst
                    continue
            logical, eol = stripped, True
            continued = False
        else:
            logical, eol = _trim_continuation(stripped, cont)
            if eol and logical == "":
                continue
            continued = True
        span = Span(lineno, lead + 1)
        span.offsets.append(0)
        span.places.append((lineno, lead + 1))
        end = lineno
        while not eol and i < n:
            physical = lines[i]
            i += 1
            end = i
            body = physical.rstrip("\r\n")
            if not directives.done:
                directives.feed(body, end)  # only marks the directives as done
            head = go_lstrip(body)
            if not head or head[0] == "#":
                continue
            piece, eol = _trim_continuation(body, cont)
            span.offsets.append(len(logical))
            span.places.append((end, 1))
            logical += piece
        span.end_line = end
        span.end_col = (len(token) if end == lineno else len(lines[end - 1].rstrip("\r\n"))) + 1
        if continued and fast_path:
            raw = token if end == lineno else "".join(lines[lineno - 1:end]).rstrip("\r\n")
            inst = simple_instruction(logical, raw, lineno, lead + 1, escape, span)
            if inst is not None:
                seen_instruction = True
                yield inst
                continue
        toks, heredoc_kw = _instruction(src, logical, 0, span, escape)
        src.current = [t for t in toks if t.data is span] if toks[0].type == "ONBUILD" else toks[:1]
        yield from toks
        if heredoc_kw and "<<" in logical:
            try:
                openers = openers_in_line(logical)
            except ExpansionError as exc:
                raise src.error(DockerfileSyntaxError, exc.message, lineno, lead + 1) from None
            docs, first = [], i + 1
            for op in openers:
                content: list[str] = []
                while True:
                    if i >= n:
                        raise src.error(DockerfileSyntaxError, "unterminated heredoc", lineno, lead + 1,
                                        hint=f"end the heredoc with a line holding only {op.name}")
                    physical = lines[i]
                    i += 1
                    candidate = _trim_newline(physical)
                    if op.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == op.name:
                        break
                    content.append(physical)
                span.end_line = i
                span.end_col = len(_trim_newline(lines[i - 1])) + 1
                docs.append(ast.Heredoc(op.name, "".join(content), op.expand, op.chomp, op.fd))
            if docs:
                yield _tok("HEREDOCS", docs[0].name, first, 1, tuple(docs))
        if span.end_line == lineno:
            span.raw = token
        else:
            span.raw = "".join(lines[lineno - 1:span.end_line]).rstrip("\r\n")
        seen_instruction = True
        yield _tok("_EOL", "", span.end_line, span.end_col, span)
    if not seen_instruction:
        raise DockerfileSyntaxError("file with no instructions", filename=src.filename, line=max(n, 1),
                                    hint="a Dockerfile needs at least a FROM instruction")


def joined_line(raw: str, escape: str = "\\") -> str:
    """An instruction's source text (`Instruction.raw`) as Docker's logical line: continuation
    lines joined (escape and newline dropped, comment and blank lines skipped), heredoc bodies
    left out."""
    cont = _CONT[escape]
    lines = raw.split("\n")
    logical, eol = _trim_continuation(go_lstrip(_trim_newline(lines[0])), cont)
    for physical in lines[1:]:
        if eol:
            break
        body = _trim_newline(physical)
        head = go_lstrip(body)
        if not head or head[0] == "#":
            continue
        piece, eol = _trim_continuation(body, cont)
        logical += piece
    return logical


def _trim_continuation(line: str, cont: re.Pattern[str]) -> tuple[str, bool]:
    if not line.rstrip(" \t").endswith(("\\", "`")):  # fast path: no escape at the end
        return line, True
    m = cont.search(line)
    if m:
        return line[:m.start()], False
    return line, True


def _tok(type_: str, value: str, line: int, col: int, data: object = None) -> Tok:
    t = str.__new__(Tok, value)
    t.type, t.value, t.line, t.column, t.data = type_, value, line, col, data
    return t


def _instruction(src: Source, line: str, base: int, span: Span, escape: str) -> tuple[list[Tok], bool]:
    """newNodeFromLine: the tokens of one instruction (recursing into an ONBUILD trigger).

    Returns the tokens and whether the instruction may carry heredocs.
    """
    cmd, flags, args, args_off = split_command(line)
    kw = cmd.lower()
    kind = kw.upper() if kw in KEYWORDS else "UNKNOWN"
    at = span.at

    if len(span.offsets) == 1:  # one physical line: columns are offsets
        line0, col0 = span.places[0]
        col0 += base

        def tok(type_: str, value: str, off: int, data: object = None) -> Tok:
            return _tok(type_, value, line0, col0 + off, data)
    else:
        def tok(type_: str, value: str, off: int, data: object = None) -> Tok:
            ln, col = at(base + off)
            return _tok(type_, value, ln, col, data)

    def items(words: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
        return [(w, *at(base + args_off + o)) for w, o in words]

    lead = 0 if base == 0 else len(line) - len(go_lstrip(line))  # a logical line starts stripped
    out = [tok(kind, cmd, lead, span)]
    if base == 0:
        span.head = id(out[0])
    if flags:
        out.append(tok("FLAGS", flags[0][0], flags[0][1], [(f, *at(base + o)) for f, o in flags]))
    heredocs = False
    if kw in ("run", "cmd", "entrypoint", "shell"):
        out += _maybe_json(src, args, args_off, tok)
        heredocs = kw == "run" and out[-1].type != "JSON"
    elif kw in ("copy", "add", "volume"):
        try:
            decoded = parse_json(args)
        except NotStringArray as exc:
            ln, col = at(base + args_off)
            raise src.error(DockerfileSyntaxError, str(exc), ln, col) from None
        if decoded is not None:
            out.append(tok("JSON", args, args_off, decoded))
        elif args:
            words = _split_ws(args)
            if kw == "volume":
                out.append(tok("WORDS", args, args_off, items(words)))
            else:
                if len(words) > 1:
                    out.append(tok("SOURCES", words[0][0], args_off, items(words[:-1])))
                out.append(tok("DEST", words[-1][0], args_off + words[-1][1]))
                heredocs = True
    elif kw == "from":
        for idx, (w, o) in enumerate(_split_ws(args)):
            out.append(tok("AS" if idx == 1 and w.lower() == "as" else "WORD", w, args_off + o))
    elif kw == "expose":
        if args:
            out.append(tok("WORDS", args, args_off, items(_split_ws(args))))
    elif kw == "arg":
        arg_words = parse_words(args, escape)
        if arg_words:
            out.append(tok("WORDS", args, args_off, items(_locate(args, arg_words))))
    elif kw in ("env", "label"):
        try:
            pairs = parse_name_val(args, kw.upper(), escape)
        except NameValError as exc:
            m = re.search(r"(?:^|(?<=[ \t]))" + re.escape(exc.word) + r"(?=[ \t]|$)", args) if exc.word else None
            ln, col = at(base + args_off + (m.start() if m else 0))
            raise src.error(DockerfileSyntaxError, str(exc), ln, col, hint=exc.hint) from None
        if pairs:
            located, cursor = [], 0
            for k, v in pairs:
                o = args.find(k, cursor) if k else cursor
                o = cursor if o < 0 else o
                cursor = o + len(k)
                located.append((k, v, *at(base + args_off + o)))
            out.append(tok("PAIRS", args, args_off, located))
    elif kw == "healthcheck":
        typ, rest = split_health(args)
        if typ:
            kind_hc = {"NONE": "HC_NONE", "CMD": "HC_CMD"}.get(typ.upper(), "HC_TYPE")
            out.append(tok(kind_hc, typ, args_off))
            out += _maybe_json(src, rest, args_off + len(args) - len(rest), tok)
    elif kw == "onbuild":
        if args:
            inner, heredocs = _instruction(src, args, base + args_off, span, escape)
            out += inner
    elif args:
        out.append(tok("TEXT", args, args_off))
    return out, heredocs


def _maybe_json(src: Source, rest: str, off: int, tok) -> list[Tok]:
    """parseMaybeJSON: JSON (exec form), TEXT (shell form), or nothing for an empty rest."""
    if rest == "":
        return []
    try:
        decoded = parse_json(rest)
    except NotStringArray as exc:
        t = tok("JSON", rest, off)
        raise src.error(DockerfileSyntaxError, str(exc), t.line, t.column,
                        hint='write an exec form as a list of strings: ["cmd", "arg"]') from None
    if decoded is not None:
        return [tok("JSON", rest, off, decoded)]
    return [tok("TEXT", rest, off)]


def _split_ws(args: str) -> list[tuple[str, int]]:
    if not args:
        return []
    out, pos = [], 0
    for m in WHITESPACE.finditer(args):
        out.append((args[pos:m.start()], pos))
        pos = m.end()
    out.append((args[pos:], pos))
    return out


def _locate(args: str, words: list[str]) -> list[tuple[str, int]]:
    out, cursor = [], 0
    for w in words:
        o = args.find(w, cursor)
        o = cursor if o < 0 else o
        out.append((w, o))
        cursor = o + len(w)
    return out
