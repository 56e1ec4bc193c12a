"""`pybuild kill`: send a signal (default SIGKILL) to running containers."""

from __future__ import annotations

import argparse
import signal

from builder.containers import containers
from builder.errors import BuildError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--signal", default="KILL", help="signal name or number (default KILL)")
    p.add_argument("containers", nargs="+", help="container ids (or unique prefixes) or names")


def parse_signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise BuildError(f"invalid signal: {text}") from None


def run(args: argparse.Namespace) -> int:
    sig = parse_signal(args.signal)
    store = containers()
    for ref in args.containers:
        store.get(ref).kill(sig)
        print(ref)
    return 0
