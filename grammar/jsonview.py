"""The stable JSON view of a parsed Dockerfile (`pybuild parse --json`), for linters and tools.

    {"directives": {"escape": "\\\\", ...},
     "instructions": [{"keyword": "run", "line": 6, "end_line": 8,
                       "flags": ["--mount=type=cache,target=/root/.cache"],
                       "form": "exec" | "shell" | null, "args": [...],
                       "pairs": [[key, value], ...] | null,
                       "heredocs": [{"name", "content", "expand", "chomp", "fd"}],
                       "trigger": {...} | null}],
     "errors": [{"line": 2, "column": 6, "message": "unknown flag: --user", "hint": ...}]}

`form` is "exec" for a JSON array (RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK, and COPY/ADD/VOLUME
written as JSON), "shell" for a shell-form command, null otherwise. `args` are Docker's raw
argument words (for ENV/LABEL the flattened pairs); nothing is expanded. `errors` lists what the
instruction-level checks refuse (see grammar.lenient); such an instruction appears with its keyword
as written and `args` holding the rest of its line.
"""

from __future__ import annotations

from typing import Any, Sequence

from grammar import ast
from grammar.errors import DockerfileError


def instruction_json(inst: ast.Instruction) -> dict[str, Any]:
    """One instruction as a JSON-ready dict."""
    form = None
    command = getattr(inst, "command", None)
    if isinstance(command, ast.ExecForm) or getattr(inst, "json", False):
        form = "exec"
    elif isinstance(command, ast.ShellForm):
        form = "shell"
    args = list(inst.args)
    if isinstance(inst, ast.Unknown):
        args = [inst.text] if inst.text else []
    pairs = [list(p) for p in inst.pairs] if isinstance(inst, (ast.Env, ast.Label)) else None
    heredocs = [{"name": h.name, "content": h.content, "expand": h.expand, "chomp": h.chomp, "fd": h.fd}
                for h in getattr(inst, "heredocs", ())]
    trigger = instruction_json(inst.trigger) if isinstance(inst, ast.Onbuild) else None
    return {
        "keyword": inst.keyword,
        "line": inst.range.start_line,
        "end_line": inst.range.end_line,
        "flags": [f.raw for f in inst.flags],
        "form": form,
        "args": args,
        "pairs": pairs,
        "heredocs": heredocs,
        "trigger": trigger,
    }


def dockerfile_json(df: ast.Dockerfile, errors: Sequence[DockerfileError] | None = None) -> dict[str, Any]:
    """The whole Dockerfile as a JSON-ready dict (directives always include `escape`; `errors`
    when given, as `parse --json` always gives them)."""
    directives = {"escape": df.escape}
    directives.update(dict(df.directives))
    out: dict[str, Any] = {"directives": directives, "instructions": [instruction_json(i) for i in df.instructions]}
    if errors is not None:
        out["errors"] = [{"line": e.line, "column": e.column, "message": e.message,
                          **({"hint": e.hint} if e.hint else {})} for e in errors]
    return out
