"""`pybuild pin`: rewrite FROM lines to name:tag@sha256:... digests."""

from __future__ import annotations

import argparse

from builder.errors import NotImplementedYet


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("pybuild pin: not implemented yet")
