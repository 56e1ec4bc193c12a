"""`pybuild logs`: show a container's output (like `docker logs`), foreground or detached."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from builder.containers import containers
from builder.errors import BuildError

if TYPE_CHECKING:
    from runtime.containers import LogEntry


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


def _bound_ns(text: str | None) -> int:
    """A --since/--until bound in ns (0: none); a log's own stamp (`...55.546434123Z`) exactly."""
    if not text:
        return 0
    from runtime.containers import stamp_ns

    try:
        return stamp_ns(text) if text.endswith("Z") and "T" in text else int(parse_time(text) * 1e9)
    except ValueError:
        return int(parse_time(text) * 1e9)


def run(args: argparse.Namespace) -> int:
    from runtime.containers import LogReader, select_entries

    tail = -1 if args.tail == "all" else _count(args.tail)
    since, until = _bound_ns(args.since), _bound_ns(args.until)
    c = containers().get(args.container)
    if not c.json_log_path.exists():
        return _raw(c, args.follow)  # a container started before logs were kept as JSON
    reader = LogReader(c.json_log_path)
    try:
        for e in select_entries(reader.read(), since, until, tail):
            _emit(e, args.timestamps)
        while args.follow and not until:
            entries = select_entries(reader.read())
            for e in entries:
                _emit(e, args.timestamps)
            if entries:
                continue
            if not c.is_running():
                for e in select_entries(reader.read()):  # what came in while it stopped
                    _emit(e, args.timestamps)
                return 0
            time.sleep(0.05)
    finally:
        reader.close()
    return 0


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise BuildError(f"invalid --tail {text!r}: a number of lines or all") from None
    return max(n, 0)


def _emit(entry: LogEntry, timestamps: bool) -> None:
    out = sys.stderr.buffer if entry.stream == "stderr" else sys.stdout.buffer
    out.write((entry.time.encode() + b" " if timestamps else b"") + entry.data)
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
