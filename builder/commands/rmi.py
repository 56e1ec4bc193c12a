"""`pybuild rmi`: remove image names (and images no name refers to)."""

from __future__ import annotations

import argparse

from builder.errors import NotImplementedYet


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("pybuild rmi: not implemented yet")
