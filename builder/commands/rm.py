"""`pybuild rm`: remove containers."""

from __future__ import annotations

import argparse

from builder.containers import containers


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill running containers first")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="remove the container's anonymous volumes (pybuild always does: they belong to it)")
    p.add_argument("containers", nargs="+", help="container ids (or unique prefixes) or names")


def run(args: argparse.Namespace) -> int:
    store = containers()
    store.sweep()
    for ref in args.containers:
        store.get(ref).remove(force=args.force)
        print(ref)
    return 0
