"""`pybuild tag`: give an image another name."""

from __future__ import annotations

import argparse

from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="name[:tag] or image id of an image in the store")
    p.add_argument("target", metavar="TARGET", help="the new name[:tag]")


def run(args: argparse.Namespace) -> int:
    Store.open().tag(args.target, args.source)
    return 0
