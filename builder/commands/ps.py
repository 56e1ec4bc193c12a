"""`pybuild ps`: list containers (like `docker ps`)."""

from __future__ import annotations

import argparse

from builder.commands._listing import add_filter, add_format, label_matches, parse_filters, print_formatted
from builder.containers import containers
from runtime.containers import format_status, since

FILTERS = ("status", "name", "label", "ancestor", "id", "exited", "health")
HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running ones)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show container ids")
    p.add_argument("--no-trunc", action="store_true", help="show full ids and commands")
    add_format(p)
    add_filter(p, FILTERS)


def _ports(c) -> str:  # type: ignore[no-untyped-def]
    """Docker's PORTS: the published mappings, then the image's EXPOSEd ports nothing publishes."""
    published = [f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in c.config.ports]
    mapped = {f"{p.container_port}/{p.protocol}" for p in c.config.ports}
    return ", ".join(published + [p for p in _exposed(c) if p not in mapped])


def _exposed(c) -> list[str]:  # type: ignore[no-untyped-def]
    try:
        from builder.store import Store

        ports = Store.open().image_by_id(c.config.image).config().config.exposed_ports
    except Exception:  # noqa: BLE001 - an image removed since: nothing exposed to show
        return []
    return [p if "/" in p else f"{p}/tcp" for p in ports]


def run(args: argparse.Namespace) -> int:
    store = containers()
    store.sweep()
    filters = parse_filters(args.filter, FILTERS)
    if "status" in filters or "exited" in filters:
        args.all = True  # as docker: a status filter looks at every container
    rows = []
    for c in store.list():
        if not args.all and not c.is_running():
            continue
        if filters and not _matches(c, filters):
            continue
        command = " ".join(c.config.process.argv)
        if not args.no_trunc and len(command) > 20:
            command = command[:19] + "…"
        running = c.is_running()  # docker ps shows the ports of running containers only
        rows.append({"ID": c.id if args.no_trunc else c.short_id, "Image": c.config.image_ref,
                     "Command": f'"{command}"', "CreatedAt": c.config.created,
                     "RunningFor": f"{since(c.config.created)} ago", "Status": format_status(c.state(), health=_health(c)),
                     "State": _state(c), "Ports": _ports(c) if running else "", "Names": c.config.name,
                     "Labels": ",".join(f"{k}={v}" for k, v in sorted(_labels(c).items()))})
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    if args.format:
        print_formatted(args.format, rows, HEADERS)
        return 0
    header = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
    cells = [header] + [tuple(r[k] for k in ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"))
                        for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("   ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def _state(c) -> str:  # type: ignore[no-untyped-def]
    """Docker's State: created, running, exited."""
    return "running" if c.is_running() else c.state().status if c.state().status != "running" else "exited"


def _health(c) -> str:  # type: ignore[no-untyped-def]
    """State.Health's Status: starting, healthy, unhealthy; "" without a healthcheck."""
    return str((c.health() or {}).get("Status", "")) if c.config.healthcheck else ""


def _labels(c) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A container's labels: its image's (pybuild run has no --label)."""
    try:
        from builder.store import Store

        return dict(Store.open().image_by_id(c.config.image).config().config.labels or {})
    except Exception:  # noqa: BLE001 - an image removed since: no labels
        return {}


def _matches(c, filters: dict[str, list[str]]) -> bool:  # type: ignore[no-untyped-def]
    if "status" in filters and _state(c) not in filters["status"]:
        return False
    if "name" in filters and not any(n in c.config.name for n in filters["name"]):
        return False
    if "id" in filters and not any(c.id.startswith(i) for i in filters["id"]):
        return False
    if "exited" in filters and (c.is_running() or str(c.state().exit_code) not in filters["exited"]):
        return False
    if "ancestor" in filters and not any(a in (c.config.image_ref, c.config.image) or
                                         c.config.image_ref.split(":")[0] == a or
                                         c.config.image.removeprefix("sha256:").startswith(a.removeprefix("sha256:"))
                                         for a in filters["ancestor"]):
        return False
    if "health" in filters and (_health(c) or "none") not in filters["health"]:
        return False
    return "label" not in filters or label_matches(_labels(c), filters["label"])
