"""The steps BuildKit shows around a build's own: `[internal] load build definition from
Dockerfile`, `[internal] load .dockerignore`, `[internal] load metadata for IMAGE` before the
stages, `exporting to image` after them. They take the `#N` numbers the solver's steps do not:
1.. before the first stage step (`first_solver_number`), then after the last one.

A plain class (on the cached no-op rebuild's path, which replays these steps from the memo).
"""

from __future__ import annotations

import _thread  # threading.Lock, without importing threading (and typing) on the no-op rebuild's path

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from builder.util.progress import Progress

__all__ = ["InternalSteps"]


class InternalSteps:
    """Numbers and shows the internal steps; `shown` lists them (name, statuses) for the memo."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.n = 0
        self.lock = _thread.allocate_lock()
        self.names: dict[int, str] = {}
        self.shown: list[list[object]] = []

    def begin(self, name: str) -> int:
        """Start the next internal step; returns its number."""
        with self.lock:
            self.n += 1
            n = self.n
            self.names[n] = name
        self.progress.start(n, name)
        return n

    def end(self, n: int, statuses: list[str] | tuple[str, ...] = (), *, record: bool = True) -> None:
        """Show its status lines, then DONE."""
        for text in statuses:
            self.progress.status(n, text)
        self.progress.done(n)
        if record:
            with self.lock:
                self.shown.append([self.names[n], list(statuses)])

    def fail(self, n: int, exc: BaseException) -> None:
        """The step ended with `exc`: ERROR and its message, or CANCELED on Ctrl-C."""
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        self.progress.error(n, "cancelled" if isinstance(exc, KeyboardInterrupt) else message)

    def step(self, name: str, statuses: list[str] | tuple[str, ...] = ()) -> None:
        """A step that is done as soon as it is shown."""
        self.end(self.begin(name), statuses)

    def skip_to(self, last: int) -> None:
        """The solver took numbers up to `last`: later internal steps come after them."""
        with self.lock:
            self.n = max(self.n, last)

    def replay(self, shown: list[list[object]]) -> None:
        """Show steps recorded by an earlier build (the no-op rebuild)."""
        for name, statuses in shown:
            self.end(self.begin(str(name)), [str(s) for s in statuses] if isinstance(statuses, list) else [],
                     record=False)
