"""`pybuild pin`: rewrite FROM lines to name:tag@sha256:... digests resolved from their registries."""

from __future__ import annotations

import argparse

from builder.commands._registry_args import add_registry_args, registry_options


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild pin [OPTIONS] [DOCKERFILE]"
    p.add_argument("dockerfile", nargs="?", default="Dockerfile", help="the Dockerfile to rewrite (default: ./Dockerfile)")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a FROM is not pinned (one that uses a variable included)")
    add_registry_args(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from builder.build.pin import pin_dockerfile
    from builder.errors import BuildError
    from builder.transfer import resolve_digest
    from builder.util.atomic import write_atomic

    path = Path(args.dockerfile)
    try:
        text = path.read_bytes().decode()  # bytes: CRLF line endings stay as they are
    except OSError as exc:
        raise BuildError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BuildError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    options = registry_options(args)
    errors: list[BuildError] = []
    if args.check:
        _, pins = pin_dockerfile(text, lambda ref: "sha256:" + "0" * 64, str(path), errors.append)
        for pin in pins:
            print(f"{path}:{pin.line}: {pin.old} is not pinned")
        _report(errors)
        return 1 if pins or errors else 0
    new_text, pins = pin_dockerfile(text, lambda ref: resolve_digest(ref, options), str(path), errors.append)
    if pins:
        write_atomic(path, new_text.encode(), mode=path.stat().st_mode & 0o7777)  # the user's file: durable
    for pin in pins:
        print(f"{path}:{pin.line}: {pin.new}")
    if not pins and not errors:
        print(f"{path}: nothing to pin")
    _report(errors)
    return 1 if errors else 0


def _report(errors: list) -> None:  # noqa: ANN001 - StepErrors, one per FROM that stays unpinned
    import sys

    for error in errors:
        sys.stderr.write(error.render() + "\n")
