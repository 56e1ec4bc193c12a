"""`pybuild push`: push an image to a registry."""

from __future__ import annotations

import argparse

from builder.errors import NotImplementedYet


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("pybuild push: not implemented yet")
