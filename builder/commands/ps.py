"""`pybuild ps`: list containers (like `docker ps`)."""

from __future__ import annotations

import argparse

from builder.containers import containers
from runtime.containers import format_status, since


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running ones)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show container ids")
    p.add_argument("--no-trunc", action="store_true", help="show full ids and commands")


def _ports(c) -> str:  # type: ignore[no-untyped-def]
    return ", ".join(f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in c.config.ports)


def run(args: argparse.Namespace) -> int:
    store = containers()
    store.sweep()
    rows = []
    for c in store.list():
        if not args.all and not c.is_running():
            continue
        if args.quiet:
            print(c.id if args.no_trunc else c.short_id)
            continue
        command = " ".join(c.config.process.argv)
        if not args.no_trunc and len(command) > 20:
            command = command[:19] + "…"
        running = c.is_running()  # docker ps shows the ports of running containers only
        rows.append((c.id if args.no_trunc else c.short_id, c.config.image_ref, f'"{command}"', f"{since(c.config.created)} ago",
                     format_status(c.state()), _ports(c) if running else "", c.config.name))
    if args.quiet:
        return 0
    header = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0
