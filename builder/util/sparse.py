"""Write file content with its runs of zeros left as holes, as containerd and BuildKit extract
sparse files: a 10 GiB file that is mostly holes takes its data's space on disk, not 10 GiB.
The bytes read back are the same, so digests do not change."""

from __future__ import annotations

import errno
import os
from typing import Callable

__all__ = ["SparseWriter", "BLOCK", "hole_reader"]

BLOCK = 64 << 10  # a run of zeros this long (and aligned to it in the file) becomes a hole
_ZEROS = bytes(BLOCK)


class SparseWriter:
    """Writes to `fd` from its current offset, skipping aligned zero blocks (one seek per run of
    them, one write per run of data); `close()` writes what is pending and sets the size (a file
    that ends in a hole keeps its length). Does not close `fd`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = os.lseek(fd, 0, os.SEEK_CUR)  # the file offset of the next byte given (pending first)
        self._disk = self.pos  # the fd's own offset
        self.pending = b""  # the start of a block not yet complete (chunks need not be block-sized)
        self.holes = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        buf = data if isinstance(data, bytes) else bytes(data)
        if self.pending:
            need = BLOCK - (self.pos + len(self.pending)) % BLOCK
            if len(buf) < need:
                self.pending += buf
                return
            head, self.pending = self.pending + buf[:need], b""
            self._blocks(head, 0)
            self._blocks(buf, need)
        else:
            self._blocks(buf, 0)

    def _blocks(self, buf: bytes, start: int) -> None:
        """Write `buf[start:]` (at `self.pos`) up to its last block boundary; keep the rest pending."""
        base, i, n = self.pos - start, start, len(buf)
        run = i
        while True:
            edge = BLOCK - (base + i) % BLOCK
            if n - i < edge:
                break
            if edge == BLOCK and buf.startswith(_ZEROS, i):  # memcmp, no copy
                self._emit(buf, run, i, base)
                i += BLOCK
                run = i
                self.holes = True
            else:
                i += edge
        self._emit(buf, run, i, base)
        self.pos = base + i
        self.pending = buf[i:]

    def _emit(self, buf: bytes, a: int, b: int, base: int) -> None:
        if a == b:
            return
        if self._disk != base + a:
            os.lseek(self.fd, base + a, os.SEEK_SET)
        view = memoryview(buf)[a:b]
        while view:
            view = view[os.write(self.fd, view):]
        self._disk = base + b

    def skip_to(self, offset: int) -> None:
        """The bytes from here to `offset` are zeros (a hole in a sparse archive member)."""
        if offset <= self.pos + len(self.pending):
            return
        if self.pending:
            self._emit(self.pending, 0, len(self.pending), self.pos)
            self.pending = b""
        self.pos, self.holes = offset, True

    def close(self) -> None:
        if self.pending:
            self._emit(self.pending, 0, len(self.pending), self.pos)
            self.pos += len(self.pending)
            self.pending = b""
        if self.holes and self._disk != self.pos:
            os.ftruncate(self.fd, self.pos)  # the file ends in a hole
            os.lseek(self.fd, self.pos, os.SEEK_SET)
            self._disk = self.pos


_CHUNK_ZEROS = bytes(1 << 20)


def hole_reader(fd: int) -> Callable[[int], bytes]:
    """`read(n)` of `fd` from its current offset that serves holes as zeros without reading them
    (SEEK_DATA/SEEK_HOLE; plain reads where the filesystem cannot tell). A piece never crosses a
    MiB boundary of the file, so a reader of MiB pieces stays aligned (as parallel gzip wants)."""
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    data_end = -1  # the end of the data region `pos` is in; -1: unknown
    hole_end = -1  # the end of the hole `pos` is in

    def read(n: int) -> bytes:
        nonlocal pos, data_end, hole_end
        if pos >= data_end and pos >= hole_end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # not told: read everything
                    data_end = 1 << 62
                    os.lseek(fd, pos, os.SEEK_SET)
                else:  # a hole up to the end of the file
                    hole_end = os.fstat(fd).st_size
            else:
                if start > pos:
                    hole_end = start
                else:
                    data_end = os.lseek(fd, pos, os.SEEK_HOLE)
        edge = len(_CHUNK_ZEROS) - pos % len(_CHUNK_ZEROS)  # pieces end on MiB boundaries: then whole
        if pos < hole_end:                                 # MiB of a hole are one shared object
            k = min(n, hole_end - pos, edge)
            pos += k
            return _CHUNK_ZEROS if k == len(_CHUNK_ZEROS) else bytes(k)
        if pos >= data_end:
            return b""  # the end of the file
        data = os.pread(fd, min(n, data_end - pos, edge), pos)
        pos += len(data)
        return data

    return read
