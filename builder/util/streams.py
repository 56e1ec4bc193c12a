"""Stream helpers shared by the store, the build context and the layer readers (the threaded
read-ahead is in prefetch.py, so that importing these stays cheap)."""

from __future__ import annotations

import io
from typing import IO, Callable

__all__ = ["Prefixed", "Tee"]


class Prefixed(io.RawIOBase):
    """A reader that yields `head` first (bytes already peeked at), then the rest of `raw`."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        super().__init__()
        self._head, self._raw = head, raw

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:  # the underlying stream belongs to the caller
        super().close()


class Tee:
    """A reader that passes what it reads to `sink` too."""

    def __init__(self, raw: IO[bytes], sink: Callable[[bytes], object]) -> None:
        self._raw, self._sink = raw, sink

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._sink(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass
