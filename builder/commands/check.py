"""`pybuild check`: BuildKit's build checks over a Dockerfile, without building (`docker build --check`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.build.options import BuildOptions


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild check [OPTIONS] PATH | -"
    p.add_argument("context", metavar="PATH", help="build context directory (its .dockerignore is read)")
    p.add_argument("-f", "--file", metavar="FILE", help="name of the Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]",
                   help="set a build-time variable (BUILDKIT_DOCKERFILE_CHECK=skip=...;error=true configures the checks)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="target platform (default: this machine's)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (as docker build --check) or json (BuildKit's lint result)")


def run(args: argparse.Namespace) -> int:
    from builder.build.options import BuildOptions, parse_build_args

    options = BuildOptions(args.context, dockerfile=args.file, build_args=parse_build_args(args.build_arg),
                           platform=args.platform)
    return report(options, args.format)


def report(options: BuildOptions, fmt: str = "text") -> int:
    """Run the checks for `options` (a BuildOptions) and print them; 1 when anything was found or
    the file has an instruction `docker build` refuses (reported after the warnings, as BuildKit)."""
    import grammar
    from builder.build.checks.report import render_json, render_text
    from builder.build.checks.run import check_build
    from builder.build.options import parse_platforms

    parse_platforms(options.platform)
    result = check_build(options)
    refused: grammar.DockerfileError | None = None
    try:
        grammar.check_instructions(grammar.parse(result.source, filename=result.filename))
    except grammar.DockerfileError as exc:
        refused = exc
    if fmt == "json":
        data = render_json(result)
        if refused is not None and "buildError" not in data:
            data["buildError"] = {"message": refused.message, "location": {
                "sourceIndex": 0, "ranges": [{"start": {"line": refused.line}, "end": {"line": refused.line}}]}}
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(result))
        if refused is not None:
            sys.stdout.flush()
            sys.stderr.write(refused.render() + "\n")
    return 1 if result.violations or result.error or refused is not None else 0

