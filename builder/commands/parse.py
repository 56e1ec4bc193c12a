"""`pybuild parse`: parse a Dockerfile and print its outline or its AST as JSON."""

from __future__ import annotations

import argparse

from builder.errors import NotImplementedYet


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("pybuild parse: not implemented yet")
