"""The one way pybuild replaces a file: write a temp file beside it, then rename it over the target.

A reader sees the old content or the new, never a torn file. The fsync rule is one flag:

- `durable=True` (the default) for what a crash must not lose or tear: store metadata, credentials,
  user outputs. The file is fsync'd before the rename and its directory after, so after a crash
  the new content is there or the old one is.
- `durable=False` for what only costs time or history when lost (cache entries, the memo, the
  parsed Dockerfile cache, the stat cache, build records): no fsync, because a torn or empty file
  after a crash reads as a miss, and an fsync per entry would cost more than the work it saves
  (the cached no-op rebuild writes a record).
"""

from __future__ import annotations

import contextlib
import errno
import os

from builder.errors import StoreError

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import IO, Iterator

__all__ = ["atomic_file", "write_atomic", "fsync_dir", "WRITE_FAULTS"]

# what a write can meet that is no bug of ours: a full disk or quota, a device error, a file too big, a read-only mount
WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})


def _ours(exc: OSError, *paths: str) -> bool:
    """True when `exc` came from writing one of `paths` (a plain write() names no file)."""
    return exc.filename in paths or (exc.filename is None and exc.errno in WRITE_FAULTS)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkstemp(directory: str | os.PathLike[str], prefix: str) -> tuple[int, str]:
    """`tempfile.mkstemp` (a new 0600 file, O_EXCL, no symlink followed) without importing tempfile
    and random on the cached no-op rebuild's path (it writes a build record)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no usable temporary name", str(directory))


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike[str], *, mode: int = 0o644, durable: bool = True,
                tmp_dir: str | os.PathLike[str] | None = None, what: str = "") -> Iterator[IO[bytes]]:
    """A binary file that replaces `dest` when the block ends without an exception (else it is dropped).

    A symlinked `dest` is written through (the link stays); a `dest` that exists and is not a regular
    file (`/dev/null`, a fifo, a terminal) is written in place, never replaced by a file. `tmp_dir`
    (same filesystem) holds the temp file instead of `dest`'s directory. A destination that cannot be
    written (a full disk, an I/O error) is a `StoreError` naming it and `what` was being written,
    never the temp file, which is removed."""
    path = os.path.realpath(dest)  # (no pathlib: the cached no-op rebuild writes a record through here)
    writing = f" (writing {what})" if what else ""
    if os.path.isdir(path):
        raise StoreError(f"cannot write {dest}: it is a directory", hint="name a file, e.g. -o image.tar")
    if os.path.exists(path) and not os.path.isfile(path):
        try:
            with open(path, "wb") as f:
                yield f
        except OSError as exc:
            if not _ours(exc, path):
                raise
            raise StoreError(f"cannot write {dest}: {exc.strerror}{writing}") from None
        return
    try:
        fd, tmp = _mkstemp(tmp_dir or os.path.dirname(path), f".{os.path.basename(path)}.")
    except OSError as exc:
        raise StoreError(f"cannot write {dest}: {exc.strerror}{writing}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and _ours(exc, tmp, path):
            raise StoreError(f"cannot write {dest}: {exc.strerror}{writing}") from None
        raise
    if durable:
        fsync_dir(os.path.dirname(path))


def write_atomic(dest: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, durable: bool = True,
                 tmp_dir: str | os.PathLike[str] | None = None, what: str = "") -> None:
    """Replace `dest` with `data` atomically (see `atomic_file` for the rules)."""
    with atomic_file(dest, mode=mode, durable=durable, tmp_dir=tmp_dir, what=what) as f:
        f.write(data)
