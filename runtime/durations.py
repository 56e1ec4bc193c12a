"""Go's time.Duration as Docker's configs and flags hold it: `30s`, `1m30s`, `500ms` (HEALTHCHECK
--interval, `run --health-interval`), in nanoseconds.

    parse(text) -> int | None      None when `text` is not a duration
    text(ns) -> str                Go's String(): 0s, 500ms, 1.5s, 1m30s, 1h0m0s
"""

from __future__ import annotations

import re

__all__ = ["parse", "text"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


def parse(value: str) -> int | None:
    """A Go duration in nanoseconds (`0` alone needs no unit); None when it is not one."""
    if value == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return int(total) if value and pos == len(value) else None


def text(ns: int) -> str:
    """Go's time.Duration String()."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def num(value: int, scale: int) -> str:
        frac = str(value % scale).rjust(len(str(scale)) - 1, "0").rstrip("0") if scale > 1 else ""
        return str(value // scale) + ("." + frac if frac else "")

    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{num(u, 1_000)}µs"
    if u < 1_000_000_000:
        return f"{sign}{num(u, 1_000_000)}ms"
    h, rest = divmod(u, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    s = num(rest, 1_000_000_000) + "s"
    return sign + (f"{h}h{m}m{s}" if h else f"{m}m{s}" if m else s)
