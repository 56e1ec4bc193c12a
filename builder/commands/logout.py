"""`pybuild logout`: remove stored credentials for a registry."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild logout [SERVER]"
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER", help="registry host[:port] (default: docker.io)")


def run(args: argparse.Namespace) -> int:
    from builder.commands.login import _registry
    from builder.registry import credentials

    registry = _registry(args.server)
    if credentials.erase(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")
    return 0
