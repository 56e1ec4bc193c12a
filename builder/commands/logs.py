"""`pybuild logs`: show a container's output (like `docker logs`)."""

from __future__ import annotations

import argparse
import sys
import time

from builder.containers import containers


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep printing output until the container stops")
    p.add_argument("container", help="container id (or unique prefix) or name")


def run(args: argparse.Namespace) -> int:
    c = containers().get(args.container)
    out = sys.stdout.buffer
    try:
        f = open(c.log_path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        while True:
            data = f.read(65536)
            if data:
                out.write(data)
                out.flush()
                continue
            if not args.follow or not c.is_running():
                if args.follow:  # drain what came in while it stopped
                    out.write(f.read())
                    out.flush()
                return 0
            time.sleep(0.05)
