"""`Prefetch`: a reader that reads ahead in a thread (the store unpacks layers through it)."""

from __future__ import annotations

import queue
import threading
from typing import IO, Callable

__all__ = ["Prefetch", "CHUNK"]

CHUNK = 1 << 20


class Prefetch:
    """Reads `raw` ahead in a thread, passing each chunk to `on_chunk` (decompressing and hashing
    release the GIL, so they overlap with the caller's work); bounded, so memory stays flat."""

    def __init__(self, raw: IO[bytes], on_chunk: Callable[[bytes], object]) -> None:
        self._raw, self._on_chunk = raw, on_chunk
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._buf, self._pos, self._eof = b"", 0, False
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="layer-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop and (data := self._raw.read(CHUNK)):
                self._on_chunk(data)
                self._q.put(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reader's thread
            self._error = exc
        finally:
            self._q.put(None)

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._buf):
            if self._eof:
                return b""
            item = self._q.get()
            if item is None:
                self._eof = True
                if self._error is not None:
                    raise self._error
                return b""
            self._buf, self._pos = item, 0
        if n < 0 or (self._pos == 0 and n >= len(self._buf)):
            data, self._buf, self._pos = self._buf[self._pos:] if self._pos else self._buf, b"", 0
            return data
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stop = True
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()
