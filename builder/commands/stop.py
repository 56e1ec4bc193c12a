"""`pybuild stop`: stop running containers (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import argparse

from builder.containers import containers


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=float, default=10, help="seconds to wait before killing (default 10)")
    p.add_argument("containers", nargs="+", help="container ids (or unique prefixes) or names")


def run(args: argparse.Namespace) -> int:
    store = containers()
    for ref in args.containers:
        store.get(ref).stop(args.time)
        print(ref)
    return 0
