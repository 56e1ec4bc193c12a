"""`pybuild logs`: show a container's output (like `docker logs`), foreground or detached."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from builder.containers import containers
from builder.errors import BuildError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep printing output until the container stops")
    p.add_argument("-n", "--tail", default="all", metavar="N", help="only the last N lines (default: all)")
    p.add_argument("--since", metavar="TIME", help="only lines since TIME: 2026-12-07T10:00:00Z, or 10m, 2h, 3d ago")
    p.add_argument("--until", metavar="TIME", help="only lines before TIME (same forms as --since)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    p.add_argument("container", help="container id (or unique prefix) or name")


def parse_time(text: str, now: float | None = None) -> float:
    """docker's --since/--until: RFC 3339 (date, or date and time), Unix seconds, or a duration ago."""
    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BuildError(f"invalid time {text!r}", hint="use 2026-12-07T10:00:00Z, a Unix time, or 10m / 2h / 3d") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _stamp_seconds(stamp: str) -> float:
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp() + float("0." + (frac or "0"))


def run(args: argparse.Namespace) -> int:
    tail = None if args.tail == "all" else _count(args.tail)
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    c = containers().get(args.container)
    if not c.json_log_path.exists():
        return _raw(c, args.follow)  # a container started before logs were kept as JSON
    with open(c.json_log_path, "rb") as f:
        entries = [json.loads(line) for line in f.read().splitlines() if line.strip()]
        entries = [e for e in entries if (since is None or _stamp_seconds(e["time"]) >= since)
                   and (until is None or _stamp_seconds(e["time"]) < until)]
        if tail is not None:
            entries = entries[len(entries) - tail:] if tail else []
        for e in entries:
            _emit(e, args.timestamps)
        while args.follow and until is None:
            line = f.readline()
            if line.strip():
                _emit(json.loads(line), args.timestamps)
                continue
            if not c.is_running():
                for rest in f.read().splitlines():  # what came in while it stopped
                    if rest.strip():
                        _emit(json.loads(rest), args.timestamps)
                return 0
            time.sleep(0.05)
    return 0


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise BuildError(f"invalid --tail {text!r}: a number of lines or all") from None
    return max(n, 0)


def _emit(entry: dict, timestamps: bool) -> None:
    out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    out.write((entry["time"] + " " if timestamps else "") + entry["log"])
    out.flush()


def _raw(c, follow: bool) -> int:  # type: ignore[no-untyped-def]
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
            if not follow or not c.is_running():
                if follow:  # drain what came in while it stopped
                    out.write(f.read())
                    out.flush()
                return 0
            time.sleep(0.05)
