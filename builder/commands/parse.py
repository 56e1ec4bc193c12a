"""`pybuild parse`: parse a Dockerfile and print its outline or its AST as JSON."""

from __future__ import annotations

import argparse
import json
import sys


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dockerfile", metavar="DOCKERFILE", help="the Dockerfile to parse ('-' for stdin)")
    p.add_argument("--json", action="store_true",
                   help="print the unexpanded AST as JSON (stable shape, see docs/grammar.md); instruction "
                        "errors are listed under \"errors\" (exit 0 when the syntax is valid)")


def run(args: argparse.Namespace) -> int:
    import grammar

    name = "-" if args.dockerfile == "-" else args.dockerfile
    if args.dockerfile == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(args.dockerfile, "rb") as f:
            data = f.read()
    text = grammar.decode(data, filename=name)
    if args.json:  # Docker's parser's view: instruction-level errors are data, only syntax errors fail
        from grammar.jsonview import dockerfile_json
        from grammar.lenient import parse_lenient

        df, errors = parse_lenient(text, filename=name)
        json.dump(dockerfile_json(df, errors), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        df = grammar.parse(text, filename=name)
        sys.stdout.write(outline(df))
    return 0


def outline(df) -> str:  # noqa: ANN001 - grammar.ast.Dockerfile, imported lazily
    """A readable summary: directives, meta ARGs, then each stage with its instructions."""
    from grammar import ast

    out = []
    if df.directives:
        out.append("directives: " + " ".join(f"{k}={v}" for k, v in df.directives))
    for arg in df.meta_args:
        out.append(f"{arg.line:>4}  {_line(arg)}")
    for stage in df.stages:
        name = f" {stage.name}" if stage.name else ""
        out.append(f"stage {stage.index}{name}: {stage.base.image}"
                   + (f" ({stage.base.platform})" if stage.base.platform else ""))
        for inst in (stage.base, *stage.instructions):
            out.append(f"{inst.line:>4}  {_line(inst)}")
            if isinstance(inst, ast.Onbuild):
                out.append(f"{'':>4}    trigger: {_line(inst.trigger)}")
    return "\n".join(out) + "\n"


def _line(inst) -> str:  # noqa: ANN001
    from grammar import ast

    flags = "".join(f"{f.raw} " for f in inst.flags)
    kw = inst.keyword.upper()
    if isinstance(inst, ast.Unknown):
        return f"{inst.word} {inst.text}  (unknown instruction)"
    if isinstance(inst, ast.Onbuild):
        return f"{kw} {flags}".rstrip()
    command = getattr(inst, "command", None)
    if isinstance(command, ast.ExecForm):
        body = json.dumps(list(command.args))
    elif isinstance(inst, (ast.Env, ast.Label)):
        body = " ".join(f"{k}={v}" for k, v in inst.pairs)
    else:
        body = " ".join(inst.args)
    heredocs = getattr(inst, "heredocs", ())
    extra = f"  [{len(heredocs)} heredoc{'s' if len(heredocs) != 1 else ''}]" if heredocs else ""
    if isinstance(inst, ast.Healthcheck) and isinstance(command, ast.ExecForm):
        body = f"{inst.kind} {body}"
    return f"{kw} {flags}{body}{extra}".rstrip()
