"""Build progress in BuildKit's style: `#5 [build 2/7] RUN make`, output lines, CACHED, DONE 1.2s.

    make_progress(mode, stream) -> Progress     mode: auto | plain | tty | json | quiet

Events: start, status (a step's own lines: `transferring dockerfile: 96B done`), output (what a RUN
prints), cached, done, error ("cancelled" shows as CANCELED), info; `close()` prints the total time
(`[+] Building 2.3s (10/10) FINISHED`). New events are added, never renamed: other tools read them.

Library code only calls the `Progress` methods; every method is thread-safe (stages run in
parallel). `plain` is for logs, `tty` is BuildKit's live view (`builder.util.ttyview`: one row per
step, timers, the running steps' last output lines, byte work counting up), `json` prints one
event object per line.
"""

from __future__ import annotations

import _thread  # its Lock is threading.Lock, without importing threading on the no-op rebuild's path
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    import threading
    from typing import IO, Any

    from builder.util.ttyview import Row, Sub


class Progress:
    """Receives build events. This base class ignores them all (the `quiet` mode)."""

    shows_bytes = False  # whether bytes_task() draws anything (callers skip counting when not)

    def start(self, step: int, name: str) -> None:
        """Step `step` (the `#N` number) begins; `name` is like `[build 2/7] RUN make`."""

    def cached(self, step: int) -> None:
        """The step's result came from the cache."""

    def output(self, step: int, data: bytes) -> None:
        """The running step printed `data`."""

    def done(self, step: int) -> None:
        """The step finished."""

    def error(self, step: int, message: str) -> None:
        """The step failed (or was cancelled)."""

    def info(self, message: str) -> None:
        """A message that belongs to no step (warnings, the final image id)."""

    def status(self, step: int, text: str) -> None:
        """A status line of a running step that is not its output (`transferring dockerfile: 96B done`,
        `writing image sha256:... done`), as BuildKit shows them."""

    def bytes_task(self, step: int, what: str, total: int | None) -> "ByteTask":
        """A byte-counting sub-task (commit, unpack); `update(n)` as bytes go by."""
        return ByteTask()

    def close(self) -> None:
        """The build ended; flush what is pending."""


class ByteTask:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


NullProgress = Progress


class PlainProgress(Progress):
    """BuildKit's `--progress=plain`: every event on its own line, prefixed with `#N`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = _thread.allocate_lock()
        self.started: dict[int, float] = {}
        self.t0 = time.monotonic()
        self.partial: dict[int, bytes] = {}
        self.finished: set[int] = set()
        self.failed: dict[int, str] = {}

    def _write(self, text: str) -> None:
        with self.lock:
            self.stream.write(text)
            self.stream.flush()

    def start(self, step: int, name: str) -> None:
        self.started[step] = time.monotonic()
        self._write(f"\n#{step} {name}\n")

    def cached(self, step: int) -> None:
        self.finished.add(step)
        self._write(f"#{step} CACHED\n")

    def status(self, step: int, text: str) -> None:
        self._write(f"#{step} {text}\n")

    def output(self, step: int, data: bytes) -> None:
        buf = self.partial.get(step, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[step] = rest
        if lines:
            t = time.monotonic() - self.started.get(step, self.t0)
            self._write("".join(f"#{step} {t:.3f} {ln.decode(errors='replace').rstrip()}\n" for ln in lines))

    def _flush_partial(self, step: int) -> None:
        rest = self.partial.pop(step, b"")
        if rest:
            self.output(step, rest + b"\n")

    def done(self, step: int) -> None:
        self.finished.add(step)
        self._flush_partial(step)
        self._write(f"#{step} DONE {time.monotonic() - self.started.get(step, self.t0):.1f}s\n")

    def error(self, step: int, message: str) -> None:
        self.failed[step] = message
        self._flush_partial(step)
        self._write(f"#{step} {'CANCELED' if message == 'cancelled' else 'ERROR: ' + message}\n")

    def info(self, message: str) -> None:
        self._write(message.rstrip("\n") + "\n")

    def summary(self) -> str:
        """BuildKit's header: `[+] Building 2.3s (10/10) FINISHED` (ERROR or CANCELED when a step
        failed); "" when no step started."""
        if not self.started:
            return ""
        cancelled = any(m == "cancelled" for m in self.failed.values())
        state = "CANCELED" if cancelled else "ERROR" if self.failed else "FINISHED"
        return (f"[+] Building {time.monotonic() - self.t0:.1f}s "
                f"({len(self.finished)}/{len(self.started)}) {state}")

    def close(self) -> None:
        """Print the total time, as the last line."""
        line = self.summary()
        if line:
            self._write(line + "\n")


class TtyProgress(PlainProgress):
    """BuildKit's live view on a terminal (`builder.util.ttyview` draws it): one row per step with
    its timer, status rows, byte work and the running steps' last output lines, redrawn in place
    while the build runs and left whole on the screen by `close()`, with `FINISHED` (or `ERROR`,
    `CANCELED`) in the header. Messages of no step (warnings) are printed above the block. Its
    counters and `summary()` are plain mode's."""

    shows_bytes = True
    TICK = 0.15  # seconds between redraws while something runs: timers move, output tails show

    def __init__(self, stream: IO[str]) -> None:
        import threading  # a live terminal view only: threading stays off the no-op rebuild's path

        from builder.util.ttyview import terminal_size, wants_color

        super().__init__(stream)
        self.rows: dict[int, Row] = {}
        self.loose: list[Sub] = []  # byte work of no started step (a pull)
        self.drawn = 0  # lines of the block now on the screen
        self.closed = False
        self.color = wants_color(stream)
        self.size = terminal_size
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None

    def _ensure_ticker(self) -> None:
        if self.ticker is None:
            import threading

            self.ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
            self.ticker.start()

    def _row(self, step: int) -> Row:
        from builder.util.ttyview import Row

        row = self.rows.get(step)
        if row is None:  # an event of a step never started (tolerated, as plain mode does)
            row = self.rows[step] = Row(f"#{step}", time.monotonic())
            self.started.setdefault(step, row.t0)
        return row

    def start(self, step: int, name: str) -> None:
        from builder.util.ttyview import Row

        with self.lock:
            now = time.monotonic()
            self.started[step] = now
            self.rows[step] = Row(name, now)
            self._ensure_ticker()
            self._draw()

    def cached(self, step: int) -> None:
        with self.lock:
            self.finished.add(step)
            row = self._row(step)
            row.state, row.t1 = "CACHED", row.t0
            self._draw()

    def status(self, step: int, text: str) -> None:
        from builder.util.ttyview import Sub

        with self.lock:
            row = self._row(step)
            t0 = row.subs[-1].t1 if row.subs and row.subs[-1].t1 is not None else row.t0
            done = text.endswith(" done")
            row.subs.append(Sub(text.removesuffix(" done"), t0, time.monotonic() if done else None))
            self._draw()

    def output(self, step: int, data: bytes) -> None:
        from builder.util.ttyview import TAIL

        buf = self.partial.get(step, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[step] = rest
        if lines:
            with self.lock:
                tail = self._row(step).tail
                tail.extend(ln.decode(errors="replace").rstrip() for ln in lines[-TAIL:])
                del tail[:-TAIL]  # drawn by the ticker: a chatty step does not redraw per line

    def done(self, step: int) -> None:
        self._end(step, "")

    def error(self, step: int, message: str) -> None:
        self._end(step, "CANCELED" if message == "cancelled" else "ERROR", message)

    def _end(self, step: int, state: str, message: str = "") -> None:
        with self.lock:
            if state:
                self.failed[step] = message
            else:
                self.finished.add(step)
            self.partial.pop(step, None)
            row = self._row(step)
            row.state, row.t1, row.tail = state, time.monotonic(), []
            for sub in row.subs:
                if sub.t1 is None:
                    sub.t1 = row.t1
            self._draw()

    def info(self, message: str) -> None:
        with self.lock:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}A\r\x1b[J")
                self.drawn = 0
            self.stream.write(message.rstrip("\n") + "\n")
            self._draw()

    def bytes_task(self, step: int, what: str, total: int | None) -> ByteTask:
        return _RowTask(self, step, what, total)

    def close(self) -> None:
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join()
        with self.lock:
            if not self.closed:
                self._draw(final=True)
                self.closed = True

    def _tick(self) -> None:
        while not self.stopped.wait(self.TICK):
            with self.lock:
                if any(r.t1 is None for r in self.rows.values()) or any(s.t1 is None for s in self.loose):
                    self._draw()

    def _draw(self, final: bool = False) -> None:
        """Redraw the block in place (the lock is held): up to its first line, each line erased to
        its end, then whatever was below erased."""
        from builder.util.ttyview import frame

        if self.closed or not (self.rows or self.loose):
            return
        header = self.summary() if final else (
            f"[+] Building {time.monotonic() - self.t0:.1f}s ({len(self.finished)}/{len(self.started)})"
            if self.started else "")
        lines = frame(header, list(self.rows.values()), self.loose, time.monotonic(), self.size(self.stream),
                      final=final, color=self.color)
        up = f"\x1b[{self.drawn}A\r" if self.drawn else ""
        self.stream.write(up + "".join(ln + "\x1b[K\n" for ln in lines) + "\x1b[J")
        self.stream.flush()
        self.drawn = len(lines)


class _RowTask(ByteTask):
    """Byte work shown as a `=> =>` row of its step from the first bytes until it ends (BuildKit
    shows no commit or unpack rows in its final view)."""

    def __init__(self, view: TtyProgress, step: int, what: str, total: int | None) -> None:
        self.view, self.step, self.what, self.total = view, step, what, total
        self.sub: Sub | None = None

    def update(self, n: int) -> None:
        if self.sub is None:
            from builder.util.ttyview import Sub

            with self.view.lock:
                self.sub = Sub(self.what, time.monotonic(), total=self.total)
                self.sub.done_bytes = 0
                row = self.view.rows.get(self.step)
                (row.subs if row is not None else self.view.loose).append(self.sub)
                self.sub.done_bytes = n
                self.view._ensure_ticker()
                self.view._draw()  # shown at once (a fast commit ends before the ticker comes)
            return
        self.sub.done_bytes += n  # drawn by the ticker

    def close(self) -> None:
        if self.sub is not None:
            with self.view.lock:
                row = self.view.rows.get(self.step)
                subs = row.subs if row is not None else self.view.loose
                if self.sub in subs:
                    subs.remove(self.sub)
                self.view._draw()


class JsonProgress(Progress):
    """One JSON object per line: {"event": start|cached|output|done|error|info, "step": N, ...}."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = _thread.allocate_lock()
        self.started: dict[int, float] = {}
        self.t0 = time.monotonic()

    def _emit(self, **event: Any) -> None:
        import json  # (not at import: json imports re, a fifth of a replayed no-op rebuild's time)

        event["time"] = round(time.time(), 6)
        line = json.dumps(event, separators=(",", ":"))
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def start(self, step: int, name: str) -> None:
        self.started[step] = time.monotonic()
        self._emit(event="start", step=step, name=name)

    def cached(self, step: int) -> None:
        self._emit(event="cached", step=step)

    def output(self, step: int, data: bytes) -> None:
        self._emit(event="output", step=step, data=data.decode(errors="replace"))

    def done(self, step: int) -> None:
        self._emit(event="done", step=step,
                   duration=round(time.monotonic() - self.started.get(step, time.monotonic()), 6))

    def error(self, step: int, message: str) -> None:
        self._emit(event="error", step=step, message=message)

    def info(self, message: str) -> None:
        self._emit(event="info", message=message)

    def status(self, step: int, text: str) -> None:
        self._emit(event="status", step=step, text=text)

    def close(self) -> None:
        if self.started:
            self._emit(event="finished", duration=round(time.monotonic() - self.t0, 6), steps=len(self.started))


class Recorder(Progress):
    """Keeps the events it receives, as plain data (`events`: [name, args...] lists), for `play`."""

    def __init__(self) -> None:
        self.events: list[list[Any]] = []

    def start(self, step: int, name: str) -> None:
        self.events.append(["start", step, name])

    def cached(self, step: int) -> None:
        self.events.append(["cached", step])

    def output(self, step: int, data: bytes) -> None:
        self.events.append(["output", step, data])

    def done(self, step: int) -> None:
        self.events.append(["done", step])

    def error(self, step: int, message: str) -> None:
        self.events.append(["error", step, message])

    def info(self, message: str) -> None:
        self.events.append(["info", message])

    def status(self, step: int, text: str) -> None:
        self.events.append(["status", step, text])


_EVENTS = frozenset({"start", "cached", "output", "done", "error", "info", "status"})


def play(events: list[list[Any]], progress: Progress) -> None:
    """Send events a `Recorder` kept to `progress`, in order."""
    for name, *args in events:
        if name in _EVENTS:
            getattr(progress, name)(*args)


def make_progress(mode: str, stream: IO[str] | None = None) -> Progress:
    """The progress printer for `--progress=mode` (auto: tty on a terminal, else plain)."""
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "quiet":
        return Progress()
    if mode == "json":
        return JsonProgress(stream)
    if mode == "tty":
        return TtyProgress(stream)
    return PlainProgress(stream)
