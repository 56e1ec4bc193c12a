"""Write file content with its runs of zeros left as holes, as containerd and BuildKit extract
sparse files: a 10 GiB file that is mostly holes takes its data's space on disk, not 10 GiB."""

from __future__ import annotations

import os

__all__ = ["SparseWriter", "BLOCK"]

BLOCK = 64 << 10  # a run of zeros this long (and aligned to it in the file) becomes a hole
_ZEROS = bytes(BLOCK)


class SparseWriter:
    """Writes to `fd` from its current offset, seeking over zero blocks; `close()` writes what is
    pending and sets the size (a file that ends in a hole keeps its length). Does not close `fd`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = os.lseek(fd, 0, os.SEEK_CUR)  # where the next pending byte goes
        self.pending = b""  # the start of a block not yet complete (chunks need not be block-sized)
        self.holes = False

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(self.pending + bytes(data)) if self.pending else memoryview(data)
        while view:
            edge = BLOCK - self.pos % BLOCK  # zero tests on the file's block boundaries
            if len(view) < edge:
                self.pending = bytes(view)
                return
            self._put(view[:edge])
            view = view[edge:]
        self.pending = b""

    def _put(self, piece: memoryview) -> None:
        if len(piece) == BLOCK and piece == _ZEROS:
            os.lseek(self.fd, BLOCK, os.SEEK_CUR)
            self.holes = True
        else:
            rest = piece
            while rest:
                rest = rest[os.write(self.fd, rest):]
        self.pos += len(piece)

    def close(self) -> None:
        if self.pending:
            self._put(memoryview(self.pending))
            self.pending = b""
        if self.holes:
            os.ftruncate(self.fd, self.pos)
