"""Dockerfile text -> typed AST, and Docker-exact word expansion. Knows nothing of containers.

    from grammar import parse, parse_file, expand, expand_words, expand_heredoc, check_instructions

`parse` follows Docker's parser (BuildKit `frontend/dockerfile/parser`) plus the checks Docker
runs when it turns the parse tree into instructions (flags, argument counts, ONBUILD triggers),
except that an unknown instruction is kept as `ast.Unknown`; `check_instructions` rejects those
with a located error, as `docker build` does. Importing this package is cheap and parsing does
not import Lark: the LALR tables Lark compiles from grammar/dockerfile.lark are committed in
grammar/_tables.json (see grammar/tables.py). `grammar.ast` objects pickle (the builder caches them).

Errors (all `ValueError`s, see `grammar.errors`): DockerfileError, DockerfileSyntaxError,
InstructionError, UnknownInstructionError, InvalidFlagError, ExpansionError.
"""

from __future__ import annotations

import os
from typing import Mapping

from grammar import ast
from grammar.ast import Dockerfile
from grammar.errors import (
    DockerfileError,
    DockerfileSyntaxError,
    ExpansionError,
    InstructionError,
    InvalidFlagError,
    UnknownInstructionError,
)

__all__ = [
    "Dockerfile",
    "DockerfileError",
    "DockerfileSyntaxError",
    "ExpansionError",
    "InstructionError",
    "InvalidFlagError",
    "UnknownInstructionError",
    "ast",
    "check_instructions",
    "decode",
    "expand",
    "expand_heredoc",
    "expand_words",
    "onbuild_expression",
    "parse",
    "parse_file",
]


def parse(text: str, *, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text into a `Dockerfile`; raises a located `DockerfileError`."""
    from grammar.transform import build_dockerfile

    return build_dockerfile(text, filename=filename)


def parse_file(path: str | os.PathLike[str]) -> Dockerfile:
    """Read and parse a Dockerfile (UTF-8); the error location names `path`."""
    with open(path, "rb") as f:
        data = f.read()
    return parse(decode(data, filename=str(path)), filename=str(path))


def decode(data: bytes, *, filename: str = "Dockerfile") -> str:
    """Dockerfile bytes as text: UTF-8, else a `DockerfileSyntaxError` at the first bad byte.

    (Docker's parser passes any bytes through; pybuild wants text it can put in JSON configs.)
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        line = data[start:end if end >= 0 else len(data)].rstrip(b"\r").decode("utf-8", "replace")
        column = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        raise DockerfileSyntaxError(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x})", filename=filename,
            line=data.count(b"\n", 0, exc.start) + 1, column=column, source_line=line,
            hint="a Dockerfile must be UTF-8 text; convert it, for example with iconv -f latin1 -t utf-8") from None


def check_instructions(dockerfile: Dockerfile) -> None:
    """Reject what `docker build` rejects but `parse` keeps: unknown instructions (located)."""
    from grammar.transform import check_unknown

    check_unknown(dockerfile)


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word as Docker's shell lexer does (`ProcessWord`); raises `ExpansionError`."""
    from grammar.shell_lexer import process_word

    return process_word(word, env, escape)


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand and split text into words as Docker does (`ProcessWords`); raises `ExpansionError`."""
    from grammar.shell_lexer import process_words

    return process_words(text, env, escape)


def expand_heredoc(body: str, env: Mapping[str, str]) -> str:
    """Expand a `COPY <<EOF` body (unquoted delimiter) as BuildKit does: quotes are kept,
    `$VAR` and backslash escapes are processed; raises `ExpansionError`."""
    from grammar.shell_lexer import process_heredoc

    return process_heredoc(body, env)


def onbuild_expression(inst: ast.Onbuild, escape: str = "\\") -> str:
    """The trigger as BuildKit stores it in the image's `OnBuild` list: the instruction's line
    with continuations joined the way Docker joins them and `ONBUILD` removed, then for each
    heredoc a newline, its body and its terminator."""
    import re

    from grammar.lexer import joined_line

    text = re.sub(r"(?i)^[ \t\n\f\r]*ONBUILD[ \t\n\f\r]*", "", joined_line(inst.raw, escape), count=1)
    for h in getattr(inst.trigger, "heredocs", ()):
        text += "\n" + h.content + h.name
    return text
