"""BuildKit's `--progress=tty` view, drawn: rows in, lines out (`progress.TtyProgress` feeds it).

    [+] Building 2.3s (6/8)
     => [internal] load build definition from Dockerfile                          0.0s
     => => transferring dockerfile: 144B                                          0.0s
     => CACHED [1/4] FROM docker.io/library/busybox                               0.0s
     => [2/4] RUN echo hi                                                         0.3s
     => [3/4] RUN make                                                            1.4s
     => => # line 3
     => => # line 4

Every step is one row, its name left and its time right (the row is one column narrower than the
terminal, as BuildKit's); `CACHED`, `ERROR`, `CANCELED` in front of finished ones; status lines
as `=> =>` rows under their step; byte work (`=> => unpacking 1.05MB / 2.10MB`) and a running
step's last output lines (`=> => # ...`) as rows that go once the work ends. While the build runs
the block is cut to the terminal's height (the oldest finished rows go first), so that it can be
redrawn in place; the last frame is whole.
"""

from __future__ import annotations

import os
from typing import IO

from builder.util.units import human_bytes

__all__ = ["Row", "Sub", "TAIL", "frame", "terminal_size", "wants_color"]

TAIL = 6  # output lines shown under a running step (BuildKit's)
_COLORS = {"": "\x1b[34m", "CACHED": "\x1b[34m", "ERROR": "\x1b[31m", "CANCELED": "\x1b[33m"}


class Sub:
    """A `=> =>` row: a status line, or byte work counting up (`done_bytes` >= 0)."""

    __slots__ = ("text", "t0", "t1", "done_bytes", "total")

    def __init__(self, text: str, t0: float, t1: float | None = None, total: int | None = None) -> None:
        self.text, self.t0, self.t1, self.total = text, t0, t1, total
        self.done_bytes = -1

    def label(self) -> str:
        if self.done_bytes < 0:
            return self.text
        if self.t1 is None and self.total:
            return f"{self.text} {human_bytes(self.done_bytes)} / {human_bytes(self.total)}"
        return f"{self.text} {human_bytes(self.done_bytes)}"


class Row:
    """A step: its name, when it started and ended, its state, its `=> =>` rows and output tail."""

    __slots__ = ("name", "t0", "t1", "state", "subs", "tail")

    def __init__(self, name: str, t0: float) -> None:
        self.name, self.t0 = name, t0
        self.t1: float | None = None
        self.state = ""  # "" (running, or done), CACHED, ERROR, CANCELED
        self.subs: list[Sub] = []
        self.tail: list[str] = []


def frame(header: str, rows: list[Row], loose: list[Sub], now: float, size: tuple[int, int], *,
          final: bool, color: bool) -> list[str]:
    """The lines of one frame: `header` ("" for none), then the rows; cut to the terminal's height
    unless `final`; `loose` is byte work of no step (a pull)."""
    width, height = size
    groups: list[tuple[bool, list[str]]] = []  # each step's lines, and whether it has finished
    for row in rows:
        state = f"{row.state} " if row.state else ""
        lines = [_align(f" => {state}{row.name}", _secs((row.t1 or now) - row.t0), width)]
        lines += [_align(f" => => {sub.label()}", _secs((sub.t1 or now) - sub.t0), width) for sub in row.subs]
        if row.t1 is None:
            lines += [f" => => # {ln}"[:width - 1] for ln in row.tail]
        elif color:
            lines = [_COLORS[row.state] + ln + "\x1b[0m" for ln in lines]
        groups.append((row.t1 is not None, lines))
    if loose:
        groups.append((False, [_align(f" => {sub.label()}", _secs((sub.t1 or now) - sub.t0), width)
                               for sub in loose]))
    room = max(height - 2, 1)  # the header, and the line the cursor waits on
    if not final:
        while sum(len(g) for _, g in groups) > room and any(done for done, _ in groups):
            groups.pop(next(i for i, (done, _) in enumerate(groups) if done))
    lines = [ln for _, g in groups for ln in g]
    if not final and len(lines) > room:
        lines = lines[len(lines) - room:]
    return ([header] if header else []) + lines


def _align(left: str, right: str, width: int) -> str:
    """BuildKit's row: `left`, then `right` ending one column before the terminal's edge."""
    room = max(width - 2 - len(right), 1)
    return f"{left[:room]:<{room}} {right}"


def _secs(seconds: float) -> str:
    return f"{max(seconds, 0.0):.1f}s"


def terminal_size(stream: IO[str]) -> tuple[int, int]:
    """The terminal's columns and lines (COLUMNS/LINES, else 80x24, when `stream` is no terminal)."""
    try:
        size = os.get_terminal_size(stream.fileno())
        return max(size.columns, 20), max(size.lines, 4)
    except (AttributeError, OSError, ValueError):
        pass
    try:
        return max(int(os.environ.get("COLUMNS") or 80), 20), max(int(os.environ.get("LINES") or 24), 4)
    except ValueError:
        return 80, 24


def wants_color(stream: IO[str]) -> bool:
    """Colors as BuildKit's (blue done, red error, yellow canceled) on a terminal, unless NO_COLOR."""
    try:
        return stream.isatty() and not os.environ.get("NO_COLOR")
    except (AttributeError, ValueError):
        return False
