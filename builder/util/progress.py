"""Build progress in BuildKit's style: `#5 [build 2/7] RUN make`, output lines, CACHED, DONE 1.2s.

    make_progress(mode, stream) -> Progress     mode: auto | plain | tty | json | quiet

Events: start, status (a step's own lines: `transferring dockerfile: 96B done`), output (what a RUN
prints), cached, done, error ("cancelled" shows as CANCELED), info; `close()` prints the total time
(`[+] Building 2.3s (10/10) FINISHED`). New events are added, never renamed: other tools read them.

Library code only calls the `Progress` methods; every method is thread-safe (stages run in
parallel). `plain` is for logs, `tty` adds a live tail of the running steps' output (and tqdm
bars for byte work, imported only then), `json` prints one event object per line.
"""

from __future__ import annotations

import _thread  # its Lock is threading.Lock, without importing threading on the no-op rebuild's path
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    import threading
    from typing import IO, Any


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
    """On a terminal: steps as in plain mode, under them a live block redrawn in place (BuildKit's
    `[+] Building 2.3s (5/10)` header, each running step with its timer and the last lines of its
    output), and byte work as tqdm bars."""

    TAIL = 6

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.tails: dict[int, list[str]] = {}
        self.drawn = 0
        self.running: dict[int, str] = {}  # step -> name, while it runs
        self.bars = 0  # tqdm bars being drawn: the ticker leaves the terminal to them meanwhile
        import threading  # a live terminal view only: threading stays off the no-op rebuild's path

        self.ticker: threading.Thread | None = None
        self.stopped = threading.Event()

    def _tick(self) -> None:
        """Redraw the live block twice a second, so that the timers move during a silent step."""
        while not self.stopped.wait(0.5):
            with self.lock:
                if self.running and not self.bars:
                    self.stream.write("\x1b[1A\x1b[2K" * self.drawn)
                    self.drawn = 0
                    self._redraw()

    def _redraw(self) -> None:
        """The live block under the finished lines: BuildKit's header with the total time, then each
        running step with its timer and the last lines of its output (nothing once none runs)."""
        lines: list[str] = []
        if self.running:
            now = time.monotonic()
            lines.append(f"[+] Building {now - self.t0:.1f}s ({len(self.finished)}/{len(self.started)})")
            for s, name in list(self.running.items()):
                lines.append(f" => #{s} {name}"[:110] + f"  {now - self.started.get(s, now):.1f}s")
                lines += [f"  #{s} {ln}"[:120] for ln in self.tails.get(s, [])]
        out = "\x1b[1A\x1b[2K" * self.drawn + "".join(ln + "\n" for ln in lines)
        self.drawn = len(lines)
        self.stream.write(out)
        self.stream.flush()

    def start(self, step: int, name: str) -> None:
        with self.lock:
            self.running[step] = name
            if self.ticker is None:
                import threading

                self.ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
                self.ticker.start()
        super().start(step, name)

    def close(self) -> None:
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join()
        super().close()

    def cached(self, step: int) -> None:
        with self.lock:
            self.running.pop(step, None)
        super().cached(step)

    def _write(self, text: str) -> None:
        with self.lock:
            self.stream.write("\x1b[1A\x1b[2K" * self.drawn)
            self.drawn = 0
            self.stream.write(text)
            self._redraw()

    def output(self, step: int, data: bytes) -> None:
        buf = self.partial.get(step, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[step] = rest
        if lines:
            with self.lock:
                tail = self.tails.setdefault(step, [])
                tail.extend(ln.decode(errors="replace").rstrip() for ln in lines)
                del tail[:-self.TAIL]
                self.stream.write("\x1b[1A\x1b[2K" * self.drawn)
                self.drawn = 0
                self._redraw()

    def done(self, step: int) -> None:
        self.finished.add(step)
        self.partial.pop(step, None)
        with self.lock:
            self.tails.pop(step, None)
            self.running.pop(step, None)
        self._write(f"#{step} DONE {time.monotonic() - self.started.get(step, self.t0):.1f}s\n")

    def error(self, step: int, message: str) -> None:
        self.failed[step] = message
        self.partial.pop(step, None)
        with self.lock:
            tail = self.tails.pop(step, [])
            self.running.pop(step, None)
        end = "CANCELED" if message == "cancelled" else f"ERROR: {message}"
        self._write("".join(f"#{step} {ln}\n" for ln in tail) + f"#{step} {end}\n")

    shows_bytes = True

    def bytes_task(self, step: int, what: str, total: int | None) -> ByteTask:
        return _TqdmTask(self.stream, f"#{step} {what}", total, self)


class _TqdmTask(ByteTask):
    """A tqdm bar, made on the first update (so work that turns out to move no bytes draws none)."""

    def __init__(self, stream: IO[str], desc: str, total: int | None, owner: TtyProgress | None = None) -> None:
        self.stream, self.desc, self.total, self.owner = stream, desc, total, owner
        self.bar: Any = None

    def update(self, n: int) -> None:
        if self.bar is None:
            from tqdm import tqdm  # only on a TTY, only when bytes move

            if self.owner is not None:
                with self.owner.lock:
                    self.owner.bars += 1
            self.bar = tqdm(total=self.total, desc=self.desc, unit="B", unit_scale=True, leave=False,
                            file=self.stream)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            if self.owner is not None:
                with self.owner.lock:
                    self.owner.bars -= 1


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
