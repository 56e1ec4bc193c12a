"""Blobs: `blobs/sha256/<hex>`, written through `BlobWriter` (hashed as they stream, renamed into
place only when the digest is right) and read through a verifying reader."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

from builder.errors import DigestMismatchError, StoreError
from builder.oci.model import Digest
from builder.store.root import StoreRoot
from builder.util.atomic import fsync_dir
from builder.util.sparse import SparseWriter

__all__ = ["BlobStore", "BlobWriter", "CHUNK"]

CHUNK = 1 << 20
_WRITEBACK = 8 << 20


def _load_sync_file_range() -> Callable[[int, int, int], None]:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    except (OSError, AttributeError):
        return lambda fd, off, n: None
    return lambda fd, off, n: fn(fd, off, n, 2)  # SYNC_FILE_RANGE_WRITE: asynchronous


_start_writeback = _load_sync_file_range()


class BlobWriter:
    """A blob being written into tmp/: hashed as it streams, renamed into place by `commit()`.

    `hashed=False` when the caller hashes the very same bytes itself (an uncompressed layer's
    blob digest is its diff_id) and passes that digest to `commit(known=...)`. Runs of zeros are
    written as holes (an uncompressed layer holding a sparse file stays small on disk).
    """

    def __init__(self, blobs: "BlobStore", hashed: bool = True) -> None:
        self._blobs = blobs
        fd, name = tempfile.mkstemp(prefix=f"blob-{os.getpid()}-", dir=blobs.root / "tmp")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._out = SparseWriter(fd)
        self._hashed = hashed
        self._hash = hashlib.sha256() if hashed else None
        self.size = 0
        self._flushed = 0

    def write(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        try:
            self._out.write(data)
        except OSError as exc:
            raise self._failed(exc) from None
        self.size += len(data)
        if self.size - self._flushed >= _WRITEBACK:  # start writeback early, so the final fsync is short
            _start_writeback(self._file.fileno(), self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def _failed(self, exc: OSError) -> StoreError:
        """The error for a write that failed (a full disk, an I/O error); the partial blob is removed."""
        self.abort()
        return StoreError(f"cannot write a blob to the store at {self._blobs.root} ({self.size} bytes written): "
                          f"{exc.strerror}", hint="free some space (pybuild prune) and try again"
                          if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None)

    def restart(self) -> None:
        """Drop what was written so far (a download starting over)."""
        self._file.seek(0)
        self._file.truncate()
        self._out = SparseWriter(self._file.fileno())
        self._hash = hashlib.sha256() if self._hashed else None
        self.size = self._flushed = 0

    @property
    def digest(self) -> Digest:
        assert self._hash is not None
        return Digest("sha256:" + self._hash.hexdigest())

    def commit(self, expected: Digest | None = None, known: Digest | None = None) -> Digest:
        digest = known if known is not None else self.digest
        try:
            self._out.close()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            raise self._failed(exc) from None
        if expected is not None and Digest(expected) != digest:
            self.path.unlink(missing_ok=True)
            raise DigestMismatchError(f"content hashes to {digest}, not the expected {expected}; nothing stored")
        final = self._blobs.blob_path(digest)
        if final.exists():
            self.path.unlink()
        else:
            os.replace(self.path, final)
            fsync_dir(final.parent)
        return digest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class _VerifyingReader:
    """Reads a blob and raises DigestMismatchError at the end if it does not hash right."""

    def __init__(self, f: IO[bytes], digest: Digest) -> None:
        self._f, self._digest, self._hash, self._done = f, digest, hashlib.sha256(), False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hash.update(data)
        if not data and not self._done and n != 0:
            self._done = True
            if "sha256:" + self._hash.hexdigest() != self._digest:
                raise DigestMismatchError(f"stored blob {self._digest} is corrupt",
                                          hint="remove it and pull or build the image again")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "_VerifyingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlobStore(StoreRoot):
    """The blobs of a store, by digest."""

    def blob_path(self, digest: str) -> Path:
        d = Digest(digest)
        if d.algorithm != "sha256":
            raise StoreError(f"unsupported digest algorithm in {d}")
        return self.root / "blobs" / "sha256" / d.hex

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store a small blob (a config or manifest); returns its digest."""
        digest = Digest.of(data)
        if expected is not None and Digest(expected) != digest:
            raise DigestMismatchError(f"content hashes to {digest}, not the expected {expected}; nothing stored")
        if self.has_blob(digest):
            return digest
        with self.ingest() as w:
            w.write(data)
        return digest

    def put_stream(self, stream: IO[bytes], expected: Digest | None = None) -> tuple[Digest, int]:
        """Stream a blob into the store; with `expected`, a mismatch stores nothing."""
        with self.lease():
            w = BlobWriter(self)
            try:
                while data := stream.read(CHUNK):
                    w.write(data)
                return w.commit(expected), w.size
            except BaseException:
                w.abort()
                raise

    @contextlib.contextmanager
    def ingest(self, expected: Digest | None = None) -> Iterator[BlobWriter]:
        """A writer for one blob (a download): stored when the block ends, only if it hashes to
        `expected` (when given); dropped if the block raises. The store is leased meanwhile."""
        with self.lease():
            w = BlobWriter(self)
            try:
                yield w
                w.commit(expected)
            except BaseException:
                w.abort()
                raise

    def open_blob(self, digest: str, verify: bool = True) -> IO[bytes]:
        """A reader of a stored blob; with `verify`, a corrupt blob raises at the end of the read."""
        try:
            f = open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is not in the store") from None
        return _VerifyingReader(f, Digest(digest)) if verify else f  # type: ignore[return-value]

    def read_blob(self, digest: str) -> bytes:
        """A whole (small) blob, hash-checked."""
        with self.open_blob(digest) as f:
            data = f.read()
            f.read()
        if Digest.of(data) != digest:
            raise DigestMismatchError(f"stored blob {digest} is corrupt")
        return data
