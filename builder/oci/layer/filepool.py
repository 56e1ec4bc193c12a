"""Threads that create an extracted layer's files while the extracting thread parses the next entries.

Creating a file costs a few system calls (open with O_CREAT above all) that wait on the
filesystem and release the GIL; GNU tar makes them one at a time, between reads. Here the
extracting thread reads entries and queues small files (with their data) in batches, and worker
threads write each batch, so parsing and decompression overlap with file creation. Batches keep
the hand-offs (and GIL switches) few.

Entries of a tar depend on earlier ones only through their paths (a later entry replaces,
removes, links to or writes below an earlier one), so the pool tracks the path of every queued
file until its batch is done: before any other operation at a path, the extracting thread asks
`busy(path)` and, when it is, calls `drain()` first. Files in flight are thus never related
to each other or to what the extracting thread does, and every dependent pair keeps tar order.

Items carry directory descriptors owned by the extracting thread, which closes them only after
`wait()`. An item that cannot be done safely off that thread (replacing a directory, which
invalidates its cached descriptors) raises `Retry`: `drain()` redoes it there, with
`in_worker=False`, and its path stays busy until then.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Callable

__all__ = ["FilePool", "Retry"]

Path = tuple[str, ...]
Runner = Callable[[Any, bool], None]  # run(item, in_worker)
_Batch = list[tuple[Path, Any]]


class Retry(Exception):
    """Raised by `run(item, True)` when the item must be redone by the extracting thread."""


class FilePool:
    """Runs `run(item, True)` for queued items on `workers` threads (started when first needed)."""

    def __init__(self, run: Runner, workers: int = 2, batch_files: int = 64, batch_bytes: int = 4 << 20,
                 max_bytes: int = 24 << 20) -> None:
        self._run, self._workers = run, max(1, workers)
        self._batch_files, self._batch_bytes, self._max_bytes = batch_files, batch_bytes, max_bytes
        self._queue: queue.SimpleQueue[tuple[_Batch, int] | None] = queue.SimpleQueue()
        self._done: deque[tuple[_Batch, int, list[tuple[Path, Any]], BaseException | None]] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        # the rest is only used by the extracting thread
        self._batch: _Batch = []
        self._batch_size = 0
        self._sent = 0  # batches sent and not yet reaped
        self._bytes = 0  # bytes queued or sent and not yet reaped
        self._under: dict[Path, int] = {}  # path -> queued files at or below it
        self._files: dict[Path, int] = {}  # path -> queued files exactly there
        self._retry: list[tuple[Path, Any]] = []
        self._error: BaseException | None = None

    # -------------------------------------------------------------- the extracting thread

    def busy(self, path: Path) -> bool:
        """Whether a queued file is at `path`, below it, or at one of its ancestors."""
        files = self._files
        if not files:
            return False
        return path in self._under or any(path[:i] in files for i in range(1, len(path)))

    def add(self, path: Path, size: int, item: Any) -> None:
        """Queue `item` (the file at `path`, with `size` bytes of data in memory)."""
        for i in range(1, len(path) + 1):
            key = path[:i]
            self._under[key] = self._under.get(key, 0) + 1
        self._files[path] = self._files.get(path, 0) + 1
        self._batch.append((path, item))
        self._batch_size += size
        self._bytes += size
        if len(self._batch) >= self._batch_files or self._batch_size >= self._batch_bytes:
            self._send()

    def wait(self) -> None:
        """Write everything queued and wait for the workers (items to redo stay queued); raise the first error."""
        if self._batch:
            self._send()
        while self._sent:
            self._reap(block=True)

    def drain(self) -> None:
        """Write everything queued, redo here the items that asked for it, and raise the first error."""
        self.wait()
        while self._retry:
            path, item = self._retry.pop(0)
            try:
                self._run(item, False)
            finally:
                self._release(path)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Drop what is not sent, wait for the workers and stop them (errors are dropped: `drain()` first)."""
        self._batch, self._retry = [], []
        while self._sent:
            self._reap(block=True, raise_errors=False)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._threads.clear()

    def _send(self) -> None:
        self._reap(block=False)
        while self._sent and (self._sent >= 2 * self._workers or self._bytes > self._max_bytes):
            self._reap(block=True)
        if len(self._threads) < min(self._workers, self._sent + 1):
            t = threading.Thread(target=self._work, name="layer-writer", daemon=True)
            t.start()
            self._threads.append(t)
        self._queue.put((self._batch, self._batch_size))
        self._sent += 1
        self._batch, self._batch_size = [], 0

    def _reap(self, block: bool, raise_errors: bool = True) -> None:
        if block and not self._done:
            with self._cond:
                while not self._done:
                    self._cond.wait()
        while self._done:
            batch, size, retry, exc = self._done.popleft()
            self._sent -= 1
            self._bytes -= size
            self._retry.extend(retry)  # stay busy until drain() redoes them
            redo = {id(item) for _, item in retry}
            for path, item in batch:
                if id(item) not in redo:
                    self._release(path)
            if exc is not None and self._error is None:
                self._error = exc
        if self._error is not None and raise_errors:
            raise self._error

    def _release(self, path: Path) -> None:
        for i in range(1, len(path) + 1):
            key = path[:i]
            if self._under[key] == 1:
                del self._under[key]
            else:
                self._under[key] -= 1
        if self._files[path] == 1:
            del self._files[path]
        else:
            self._files[path] -= 1

    # -------------------------------------------------------------- workers

    def _work(self) -> None:
        run = self._run
        while (sent := self._queue.get()) is not None:
            batch, size = sent
            retry: list[tuple[Path, Any]] = []
            exc: BaseException | None = None
            for path, item in batch:
                try:
                    run(item, True)
                except Retry:
                    retry.append((path, item))
                except BaseException as e:  # noqa: BLE001 - handed to the extracting thread
                    exc = e
                    break
            with self._cond:
                self._done.append((batch, size, retry, exc))
                self._cond.notify()
