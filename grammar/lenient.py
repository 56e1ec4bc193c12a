"""Docker's parser's view of a Dockerfile (`pybuild parse --json`): every file whose syntax
Docker's parser accepts parses, and what the instruction-level checks refuse (`CMD` before any
`FROM`, a bare `HEALTHCHECK`, an unknown flag, `--from $x`, `FROM {{ from }}`, an unknown
instruction) comes back as a list of located errors beside the instructions.

Each refused instruction is kept as an `ast.Unknown` over its lines (its `word` is the keyword as
written, its `text` the rest of the logical line); only syntax errors (an unterminated heredoc, a
bad directive, invalid UTF-8, no instruction at all) are raised.
"""

from __future__ import annotations

from grammar import ast
from grammar.errors import (DockerfileError, DockerfileSyntaxError, InstructionError, InvalidFlagError,
                            UnknownInstructionError)

__all__ = ["parse_lenient"]

_MARK = "PYBUILDREFUSED"


def _spans(text: str, filename: str) -> list[tuple[int, int]]:
    """(start line, end line) of every logical instruction, as the scanner finds them."""
    from grammar.lexer import Source, Tok, scan

    out = []
    for item in scan(Source(text, filename), fast_path=False):
        if isinstance(item, Tok) and item.type == "_EOL":
            out.append((item.data.start_line, item.data.end_line))
    return out


def parse_lenient(text: str, *, filename: str = "Dockerfile") -> tuple[ast.Dockerfile, list[DockerfileError]]:
    """Parse `text` as Docker's parser does; return the Dockerfile and its instruction errors in
    source order. Raises `DockerfileSyntaxError` for what Docker's parser itself refuses."""
    from grammar.transform import build_dockerfile, check_unknown

    lines = text.split("\n")
    spans = _spans(text, filename)
    refused: dict[int, tuple[int, str, str]] = {}  # start line -> (end line, keyword, rest of the line)
    errors: list[DockerfileError] = []
    current = text
    for _ in range(len(spans) + 1):
        try:
            df = build_dockerfile(current, filename=filename)
            break
        except (InstructionError, InvalidFlagError) as exc:
            span = next(((s, e) for s, e in spans if s <= exc.line <= e and s not in refused), None)
            if span is None:
                raise
            errors.append(exc)
            start, end = span
            from grammar.lexer import joined_line

            logical = joined_line("\n".join(lines[start - 1:end]))
            word, _, rest = logical.strip().partition(" ")
            refused[start] = (end, word, rest.strip())
            lines[start - 1] = "FROM scratch" if word.lower() == "from" else f"{_MARK} x"  # later lines keep a stage
            for ln in range(start, end):
                lines[ln] = ""
            current = "\n".join(lines)
    else:  # pragma: no cover - each round refuses one more instruction
        raise DockerfileSyntaxError("the parser did not settle", filename=filename)
    df = _restore(df, refused)
    for inst in df.walk():
        if isinstance(inst, ast.Unknown) and inst.range.start_line not in refused:
            try:
                check_unknown(_single(df, inst))
            except UnknownInstructionError as exc:
                errors.append(exc)
    errors.sort(key=lambda e: (e.line, e.column))
    return df, errors


def _single(df: ast.Dockerfile, inst: ast.Instruction) -> ast.Dockerfile:
    return ast.Dockerfile(df.filename, df.directives, df.escape, (), (), (inst,))


def _restore(df: ast.Dockerfile, refused: dict[int, tuple[int, str, str]]) -> ast.Dockerfile:
    """Put the refused instructions back as `Unknown` nodes with their own keyword, text and lines."""
    if not refused:
        return df

    def fix(inst: ast.Instruction) -> ast.Instruction:
        if not (isinstance(inst, (ast.Unknown, ast.From)) and inst.range.start_line in refused):
            return inst
        end, word, rest = refused[inst.range.start_line]
        r = ast.SourceRange(inst.range.start_line, inst.range.start_col, end, inst.range.end_col)
        return ast.Unknown(r, f"{word} {rest}".strip(), (), (), word=word, text=rest)

    def base(frm: ast.From) -> ast.From:  # a refused FROM still starts its stage: its text is the image
        if frm.range.start_line not in refused:
            return frm
        end, word, rest = refused[frm.range.start_line]
        r = ast.SourceRange(frm.range.start_line, frm.range.start_col, end, frm.range.end_col)
        return ast.From(r, f"{word} {rest}".strip(), (), (rest,), image=rest, alias=None, platform=None)

    instructions = tuple(fix(i) for i in df.instructions)
    stages = tuple(ast.Stage(s.index, s.name, base(s.base), tuple(fix(i) for i in s.instructions))
                   for s in df.stages)
    return ast.Dockerfile(df.filename, df.directives, df.escape, df.meta_args, stages, instructions)


