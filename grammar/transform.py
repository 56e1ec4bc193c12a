"""Grammar callbacks -> typed AST (grammar.ast), with the checks BuildKit makes per instruction.

The transformer runs inside the LALR parser (no parse tree is built). `build_dockerfile` is the
whole pipeline: scan, parse, group into stages, and turn every failure into a located
`DockerfileError`.
"""

from __future__ import annotations

import gc
from typing import TypeVar

from grammar import ast
from grammar.errors import (
    DockerfileError,
    InstructionError,
    InvalidFlagError,
    UnknownInstructionError,
)
from grammar.flags import (
    STAGE_NAME,
    FlagError,
    build_flags,
    check_healthcheck,
    check_run_flags,
    suggest,
)
from grammar.heredoc import parse_opener
from grammar.lexer import KEYWORDS, Source, Span, Tok, scan
from grammar.lineparsers import go_strip
from grammar.parser import ParseError, get_parser


class Located(Exception):
    """An error found while building the AST, at (line, column); made a DockerfileError later."""

    def __init__(self, cls: type[DockerfileError], message: str, where: tuple[int, int],
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.cls, self.message, self.where, self.hint = cls, message, where, hint


_Pairs = TypeVar("_Pairs", bound="ast.Env | ast.Label")
_Copy = TypeVar("_Copy", bound="ast.Copy | ast.Add")
_One = TypeVar("_One", bound="ast.User | ast.Workdir | ast.Stopsignal | ast.Maintainer")


def _at(tok: Tok) -> tuple[int, int]:
    return tok.line, tok.column


def _range(tok: Tok) -> ast.SourceRange:
    span: Span = tok.data
    if id(tok) == span.head:  # Docker's start line: where the instruction's first line is
        return ast.SourceRange(span.start_line, span.start_col, span.end_line, span.end_col)
    return ast.SourceRange(tok.line, tok.column, span.end_line, span.end_col)


def _split(children: list) -> tuple[Tok, list, list]:
    """(keyword token, [(raw flag, line, col)], the other children)."""
    if len(children) > 1 and getattr(children[1], "type", None) == "FLAGS":
        return children[0], children[1].data, children[2:]
    return children[0], [], children[1:]


def _flags(kw: Tok, items: list, *, check: bool = True) -> tuple[ast.Flag, ...]:
    try:
        return build_flags(kw.value.lower(), items, check=check)
    except FlagError as exc:
        bad = items[exc.index]
        raise Located(InvalidFlagError, str(exc), (bad[1], bad[2]), exc.hint) from None


def _command(toks: list) -> tuple[ast.Command | None, tuple[str, ...]]:
    if not toks:
        return None, ()
    t = toks[0]
    if t.type == "JSON":
        return ast.ExecForm(tuple(t.data)), tuple(t.data)
    return ast.ShellForm(t.value), (t.value,)


def _base(kw: Tok, flags: tuple[ast.Flag, ...],
          args: tuple[str, ...]) -> tuple[ast.SourceRange, str, tuple[ast.Flag, ...], tuple[str, ...]]:
    """The Instruction fields, in order (positional construction is the fastest)."""
    return _range(kw), kw.data.raw, flags, args


def _heredocs(rest: list) -> tuple[list, tuple[ast.Heredoc, ...]]:
    if rest and getattr(rest[-1], "type", None) == "HEREDOCS":
        return rest[:-1], rest[-1].data
    return rest, ()


class ToAst:
    """One callback per grammar rule; each returns an `ast` instruction."""

    def start(self, children: list) -> ast.Instruction:
        return children[0]  # the instruction (children[1] is its _EOL)

    def from_(self, children: list) -> ast.From:
        kw, fitems, rest = _split(children)
        words = tuple(t.value for t in rest)
        flags = _flags(kw, fitems)
        alias = None
        if len(rest) == 3:
            alias = rest[2].value.lower()
            if not STAGE_NAME.match(alias):
                raise Located(InstructionError, f"invalid name for build stage: \"{rest[2].value}\", "
                              "name can't start with a number or contain symbols", _at(rest[2]),
                              "stage names are lowercase letters, digits, '-', '_' and '.'")
        platform = next((f.value for f in reversed(flags) if f.name == "platform"), None)
        return ast.From(*_base(kw, flags, words), image=words[0], alias=alias, platform=platform)

    def run(self, children: list) -> ast.Run:
        kw, fitems, rest = _split(children)
        rest, heredocs = _heredocs(rest)
        flags = _flags(kw, fitems)
        if flags:
            try:
                check_run_flags(flags)
            except FlagError as exc:
                bad = next((f for f in flags if _flag_mentions(f.raw, str(exc))), flags[0])
                where = (bad.range.start_line, bad.range.start_col)
                raise Located(InvalidFlagError, str(exc), where, exc.hint) from None
        command, args = _command(rest)
        return ast.Run(*_base(kw, flags, args), command=command, heredocs=heredocs)

    def cmd(self, children: list) -> ast.Cmd:
        kw, fitems, rest = _split(children)
        command, args = _command(rest)
        return ast.Cmd(*_base(kw, _flags(kw, fitems), args), command=command)

    def entrypoint(self, children: list) -> ast.Entrypoint:
        kw, fitems, rest = _split(children)
        command, args = _command(rest)
        return ast.Entrypoint(*_base(kw, _flags(kw, fitems), args), command=command)

    def shell(self, children: list) -> ast.Shell:
        kw, fitems, rest = _split(children)
        flags = _flags(kw, fitems)
        command, args = _command(rest)
        if not args:
            raise Located(InstructionError, "SHELL requires at least one argument", _at(rest[0]), USAGE["shell"])
        return ast.Shell(*_base(kw, flags, args), command=command)

    def _pairs(self, children: list, cls: type[_Pairs]) -> _Pairs:
        kw, fitems, rest = _split(children)
        flags = _flags(kw, fitems)
        located = rest[0].data
        for k, _, line, col in located:
            if k == "":
                raise Located(InstructionError, f"{kw.value.upper()} names can not be blank", (line, col),
                              USAGE[kw.value.lower()])
        pairs = tuple((k, v) for k, v, _, _ in located)
        flat = tuple(x for pair in pairs for x in pair)
        return cls(*_base(kw, flags, flat), pairs=pairs)

    def env(self, children: list) -> ast.Env:
        return self._pairs(children, ast.Env)

    def label(self, children: list) -> ast.Label:
        return self._pairs(children, ast.Label)

    def arg(self, children: list) -> ast.Arg:
        kw, fitems, rest = _split(children)
        flags = _flags(kw, fitems)
        words = rest[0].data
        pairs = []
        for word, line, col in words:
            name, eq, default = word.partition("=")
            if eq and name == "":
                raise Located(InstructionError, "ARG names can not be blank", (line, col), USAGE["arg"])
            pairs.append((name, default if eq else None))
        return ast.Arg(*_base(kw, flags, tuple(w for w, _, _ in words)), pairs=tuple(pairs))

    def _copy(self, children: list, cls: type[_Copy]) -> _Copy:
        kw, fitems, rest = _split(children)
        rest, heredocs = _heredocs(rest)
        flags = _flags(kw, fitems)
        name = kw.value.upper()
        is_json = rest[0].type == "JSON"
        if is_json:
            words = tuple(rest[0].data)
        else:
            words = (*(w for w, _, _ in rest[0].data), rest[1].value)
        if len(words) < 2:
            raise Located(InstructionError, f"{name} requires at least two arguments, but only one "
                          "was provided. Destination could not be determined", _at(kw), USAGE[name.lower()])
        if not is_json and parse_opener(words[-1]) is not None:
            raise Located(InstructionError, f"{name} cannot accept a heredoc as a destination", _at(rest[1]),
                          f"the heredoc is a source: {name} <<EOF /path/to/file")
        return cls(*_base(kw, flags, words), sources=words[:-1], dest=words[-1], json=is_json,
                   heredocs=heredocs)

    def copy(self, children: list) -> ast.Copy:
        return self._copy(children, ast.Copy)

    def add(self, children: list) -> ast.Add:
        return self._copy(children, ast.Add)

    def expose(self, children: list) -> ast.Expose:
        kw, fitems, rest = _split(children)
        words = tuple(w for w, _, _ in rest[0].data)
        return ast.Expose(*_base(kw, _flags(kw, fitems), words), ports=words)

    def volume(self, children: list) -> ast.Volume:
        kw, fitems, rest = _split(children)
        flags = _flags(kw, fitems)
        is_json = rest[0].type == "JSON"
        words = tuple(rest[0].data) if is_json else tuple(w for w, _, _ in rest[0].data)
        if not words:
            raise Located(InstructionError, "VOLUME requires at least one argument", _at(kw), USAGE["volume"])
        if any(go_strip(w) == "" for w in words):
            raise Located(InstructionError, "VOLUME specified can not be an empty string", _at(rest[0]),
                          USAGE["volume"])
        return ast.Volume(*_base(kw, flags, words), paths=words, json=is_json)

    def _one(self, children: list, cls: type[_One]) -> _One:
        kw, fitems, rest = _split(children)
        text = rest[0].value
        return cls(*_base(kw, _flags(kw, fitems), (text,)), text)

    def user(self, children: list) -> ast.User:
        return self._one(children, ast.User)

    def workdir(self, children: list) -> ast.Workdir:
        return self._one(children, ast.Workdir)

    def stopsignal(self, children: list) -> ast.Stopsignal:
        return self._one(children, ast.Stopsignal)

    def maintainer(self, children: list) -> ast.Maintainer:
        return self._one(children, ast.Maintainer)

    def healthcheck(self, children: list) -> ast.Healthcheck:
        kw, fitems, rest = _split(children)
        kind = rest[0].value.upper()
        if kind == "NONE":  # BuildKit does not look at the flags of HEALTHCHECK NONE
            return ast.Healthcheck(*_base(kw, _flags(kw, fitems, check=False), (rest[0].value,)),
                                   kind=kind, command=None)
        flags = _flags(kw, fitems)
        try:
            check_healthcheck({f.name: f.value or "" for f in flags})
        except FlagError as exc:
            bad = next((f for f in flags if _flag_mentions(f.raw, str(exc))), flags[-1])
            raise Located(InvalidFlagError, str(exc), (bad.range.start_line, bad.range.start_col),
                          exc.hint) from None
        command, args = _command(rest[1:])
        if not args:
            raise Located(InstructionError, "Missing command after HEALTHCHECK CMD", _at(rest[0]),
                          USAGE["healthcheck"])
        return ast.Healthcheck(*_base(kw, flags, (rest[0].value, *args)), kind=kind, command=command)

    def onbuild(self, children: list) -> ast.Onbuild:
        kw, fitems, rest = _split(children)
        return ast.Onbuild(*_base(kw, _flags(kw, fitems), ()), trigger=rest[0])

    def unknown(self, children: list) -> ast.Unknown:
        kw, fitems, rest = _split(children)
        text = rest[0].value if rest else ""
        return ast.Unknown(*_base(kw, _flags(kw, fitems, check=False), ()), word=kw.value, text=text)


def _flag_mentions(raw: str, message: str) -> bool:
    name = raw[2:].partition("=")[0]
    value = raw.partition("=")[2]
    return f"--{name}" in message or f'"{value}"' in message or (value != "" and value in message) \
        or name in message


# the hint of an argument error: how the instruction is written
USAGE = {
    "env": "write ENV NAME=VALUE [NAME=VALUE ...]",
    "label": 'write LABEL NAME=VALUE [NAME=VALUE ...] (quote blanks: NAME="a b")',
    "arg": "write ARG NAME or ARG NAME=DEFAULT",
    "copy": 'write COPY SRC [SRC ...] DEST (or COPY ["SRC", "DEST"] for paths with blanks)',
    "add": 'write ADD SRC [SRC ...] DEST (or ADD ["SRC", "DEST"] for paths with blanks)',
    "expose": "write EXPOSE PORT[/PROTOCOL] [...], e.g. EXPOSE 80/tcp",
    "volume": 'write VOLUME /path [...] or VOLUME ["/path"]',
    "onbuild": "write ONBUILD INSTRUCTION, e.g. ONBUILD COPY . /app",
    "healthcheck": "write HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE",
    "shell": 'write SHELL ["executable", "parameters"]',
    "user": "write USER NAME[:GROUP] or USER UID[:GID]",
    "workdir": "write WORKDIR /path",
    "stopsignal": "write STOPSIGNAL SIGNAL, e.g. STOPSIGNAL SIGTERM",
    "maintainer": "write MAINTAINER NAME (deprecated: LABEL maintainer=NAME)",
}

# messages for a missing or unexpected argument, as BuildKit words them
_NEEDS_ONE = {"env", "label", "arg", "expose", "volume", "onbuild", "healthcheck", "shell"}
_EXACTLY_ONE = {"user", "workdir", "stopsignal", "maintainer"}


def _explain(exc: ParseError, src: Source) -> DockerfileError:
    tok = exc.token
    keywords = [t for t in getattr(src, "current", []) if isinstance(t, Tok)]
    kw = keywords[-1] if keywords else tok
    keyword = kw.value.lower() if kw.type != "UNKNOWN" else ""
    where = tok if tok.type != "_EOL" else kw
    name = kw.value.upper()
    hint = None
    if len(keywords) >= 2 and keywords[0].value.lower() == "onbuild" and any(tok is k for k in keywords[1:]):
        if tok.value.lower() == "onbuild":
            msg = "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        else:
            msg = f"{tok.value.upper()} isn't allowed as an ONBUILD trigger"
        hint = "a trigger is any instruction but ONBUILD, FROM and MAINTAINER"
    elif keyword == "from":
        msg = "FROM requires either one or three arguments"
        hint = "write FROM IMAGE or FROM IMAGE AS NAME"
    elif keyword == "healthcheck" and tok.type == "HC_TYPE":
        msg = f'Unknown type "{tok.value.upper()}" in HEALTHCHECK (try CMD)'
    elif keyword == "healthcheck" and tok.type in ("JSON", "TEXT"):
        msg = "HEALTHCHECK NONE takes no arguments"
    elif keyword == "healthcheck" and tok.type == "_EOL" and "JSON" in exc.expected:
        msg = "Missing command after HEALTHCHECK CMD"
    elif keyword == "shell" and tok.type == "TEXT":
        msg = "SHELL requires the arguments to be in JSON form"
        hint = 'write SHELL ["executable", "parameters"]'
    elif keyword in ("copy", "add"):
        msg = f"{name} requires at least two arguments, but only one was provided. " \
              "Destination could not be determined"
    elif keyword in _EXACTLY_ONE:
        msg = f"{name} requires exactly one argument"
    elif keyword in _NEEDS_ONE and tok.type == "_EOL":
        msg = f"{name} requires at least one argument"
    else:
        msg = f"unexpected {tok.type.lower()} {tok.value!r} in {name or 'instruction'}"
    return src.error(InstructionError, msg, where.line, where.column, hint or USAGE.get(keyword))


def build_dockerfile(text: str, *, filename: str = "Dockerfile", fast_path: bool = True) -> ast.Dockerfile:
    """Scan, parse and transform `text`; group the instructions into stages.

    With `fast_path` false every instruction goes through the LALR parser (the tests check
    that both ways give the same results and errors).
    """
    src = Source(text, filename)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # parsing allocates many small acyclic objects; collections only cost time
    try:
        items = get_parser(ToAst).parse(scan(src, fast_path))
    except Located as exc:
        raise src.error(exc.cls, exc.message, *exc.where, exc.hint) from None
    except ParseError as exc:
        raise _explain(exc, src) from None
    finally:
        if gc_was_enabled:
            gc.enable()
    return _assemble(src, items)


def _assemble(src: Source, items: list) -> ast.Dockerfile:
    directives = tuple(i for i in items if isinstance(i, tuple))
    instructions = tuple(i for i in items if isinstance(i, ast.Instruction))
    meta_args: list[ast.Arg] = []
    stages: list[ast.Stage] = []
    current: list[ast.Instruction] = []
    base: ast.From | None = None
    for inst in instructions:
        if isinstance(inst, ast.From):
            if base is not None:
                stages.append(ast.Stage(len(stages), base.alias, base, tuple(current)))
            base, current = inst, []
        elif base is None:
            if isinstance(inst, ast.Arg):
                meta_args.append(inst)
            elif not isinstance(inst, ast.Unknown):
                r = inst.range
                raise src.error(InstructionError, "no build stage in current context",
                                r.start_line, r.start_col,
                                hint=f"only ARG may come before the first FROM, not {inst.keyword.upper()}")
        else:
            current.append(inst)
    if base is not None:
        stages.append(ast.Stage(len(stages), base.alias, base, tuple(current)))
    escape = next((v for k, v in directives if k == "escape"), "\\")
    return ast.Dockerfile(src.filename, directives, escape, tuple(meta_args), tuple(stages), instructions)


def check_unknown(dockerfile: ast.Dockerfile) -> None:
    """Raise UnknownInstructionError (with a "did you mean") for the first unknown instruction."""
    for inst in dockerfile.walk():
        if isinstance(inst, ast.Unknown):
            close = suggest(inst.word.upper(), [k.upper() for k in KEYWORDS])
            msg = f"unknown instruction: {inst.word}" + (f" (did you mean {close}?)" if close else "")
            if not inst.word:
                msg = "empty instruction: a line continuation with nothing after it"
            r = inst.range
            raise UnknownInstructionError(msg, filename=dockerfile.filename, line=r.start_line,
                                          column=r.start_col, source_line=_source_line(inst))


def _source_line(inst: ast.Instruction) -> str | None:
    """The physical source line where the instruction starts (from its raw text)."""
    return inst.raw.split("\n", 1)[0] if inst.raw else None
