"""Unpacking a layer tar into a directory, confined to it.

Every tar we read is treated as hostile: names are resolved lexically inside the target,
`..` that would leave it is refused, every parent directory is opened with O_NOFOLLOW (a
symlink is never written through), hardlinks must point inside the target, overlay xattrs
in a tar are dropped, and device nodes are only made by root.

Whiteouts (see `whiteout`): `extract(..., overlay=True)` writes them in the overlay form (for
snapshots), `extract(..., overlay=False)` applies them to one flat directory (for rootfs exports).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import IO, Callable, Sequence

from builder.errors import ImageFormatError, StoreError
from builder.oci.layer.decode import iter_tar
from builder.oci.layer.entry import BLK, CHR, CHUNK, DIR, FIFO, LNK, REG, SYM, Header, Warn, log_warning, split_name
from builder.oci.layer.filepool import FilePool, Retry
from builder.util.sparse import SparseWriter
from builder.oci.layer.whiteout import OPAQUE_XATTR, OVERLAY_XATTR_PREFIXES, USER_OPAQUE_XATTR, WH_META_PREFIX, WH_OPAQUE, WH_PREFIX

__all__ = ["extract"]


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_POOLED_MAX = CHUNK  # files up to this size are read into memory and written by the pool's threads
_WRITERS = 2
_QueuedFile = tuple[list[str], Header, bytes, int, bool]  # write_file's arguments, for the pool


def _umask() -> int | None:
    """The process umask, read without changing it (None when the kernel does not say)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _plain_dir(fd: int) -> bool:
    """Whether files created in this directory get our ids and the asked-for mode (no setgid, no default ACL)."""
    if os.fstat(fd).st_mode & stat.S_ISGID:
        return False
    try:
        os.getxattr(fd, "system.posix_acl_default")
    except OSError as exc:
        return exc.errno in (errno.ENODATA, errno.ENOTSUP)
    return False


def _owner_checker() -> Callable[[int, int], str | None]:
    from runtime.userns import owner_checker

    return owner_checker()


def _rootless() -> bool:
    """In pybuild's user namespace (root there, not on the host), where trusted xattrs are refused
    and overlayfs reads `user.overlay.*` ones (`userxattr`)."""
    from runtime.userns import in_user_namespace

    return in_user_namespace()


class _Extractor:
    """Applies entries in tar order. Small regular files go to a `FilePool`; any other operation on a
    path that a queued file touches (at, below or above it) drains the pool first, and directory fds
    are closed only when no worker runs, so the result is that of one entry at a time."""

    _MAX_FDS = 64  # directory fds kept open for the next entries' parents

    def __init__(self, dest: Path, overlay: bool, lowers: Sequence[Path], warn: Warn) -> None:
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self.overlay, self.lowers, self.warn = overlay, list(lowers), warn
        self.is_root = os.geteuid() == 0
        rootless = self.is_root and _rootless()
        self.devices = self.is_root and not rootless  # a user namespace's root cannot mknod (EPERM)
        self.opaque_xattr = USER_OPAQUE_XATTR if rootless else OPAQUE_XATTR
        self.unmapped = _owner_checker() if rootless else None  # an owner the user namespace lacks
        self.ids = (os.geteuid(), os.getegid())
        umask = _umask()
        self.exact_modes = 0o777 & ~umask if umask is not None else 0  # modes open(O_CREAT) gives as asked
        self.dirs: list[tuple[list[str], Header, bool]] = []  # (parts, header, made plain by us)
        self._fds: dict[tuple[str, ...], int] = {}
        self._plain: set[int] = set()  # cached dir fds where new files need no fchown/fchmod
        self.pool = FilePool(self._write_queued, _WRITERS)

    def close(self) -> None:
        self.pool.close()
        self._drop_cache()
        os.close(self.root_fd)

    def _drop_cache(self, keep: int = -1) -> None:
        self.pool.wait()  # no job may be using a descriptor we close
        for key, fd in list(self._fds.items()):
            if fd != keep:
                os.close(fd)
                self._plain.discard(fd)
                del self._fds[key]

    def open_dir(self, parts: Sequence[str], name: str, create: bool) -> int:
        """An fd of the directory `parts`, never following a symlink; the caller closes it."""
        start, depth = self.root_fd, 0
        for d in range(len(parts), 0, -1):  # start from the deepest directory already open
            if (cached := self._fds.get(tuple(parts[:d]))) is not None:
                start, depth = cached, d
                break
        fd, owned = start, False
        try:
            for i in range(depth, len(parts)):
                p = parts[i]
                try:
                    nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(p, 0o755, dir_fd=fd)
                    nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[:i + 1])
                    if stat.S_ISLNK(os.stat(p, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise ImageFormatError(f"tar entry {name!r}: /{where} is a symlink; refusing to write through it") from None
                    raise ImageFormatError(f"tar entry {name!r}: /{where} is not a directory") from None
                if owned:
                    os.close(fd)
                fd, owned = nfd, True
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return fd if owned else os.dup(fd)

    def parent(self, parts: list[str], name: str) -> int:
        key = tuple(parts[:-1])
        fd = self._fds.get(key)
        if fd is None:
            fd = self.open_dir(key, name, create=True)
            self._cache(key, fd, _plain_dir(fd) if self.is_root or self.exact_modes else False)
        return fd

    def _cache(self, key: tuple[str, ...], fd: int, plain: bool) -> None:
        """Keep `fd` open for the directory `key` (`plain`: see `_plain_dir`); may close the others."""
        if len(self._fds) >= self._MAX_FDS:
            self._drop_cache()
        self._fds[key] = fd
        if plain:
            self._plain.add(fd)

    def remove(self, pfd: int, base: str) -> None:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._drop_cache(keep=pfd)  # cached fds may point into the directories removed
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    def apply(self, h: Header, read: Callable[[int], bytes]) -> None:
        if self.unmapped is not None and (why := self.unmapped(h.uid, h.gid)):
            from runtime.userns import UNMAPPED_HINT

            raise StoreError(f"layer entry {h.name!r}: {why}", hint=UNMAPPED_HINT)
        parts = split_name(h.name)
        if not parts:
            if h.type != DIR:
                raise ImageFormatError(f"tar entry {h.name!r}: refusing to change the type of the root directory")
            return
        base = parts[-1]
        if base.startswith(WH_PREFIX):
            self.pool.drain()  # rare: no need to know what the whiteout touches
            self.whiteout(parts, h)
            return
        if self.pool.busy(tuple(parts)) or (h.type == LNK and self.pool.busy(tuple(split_name(h.linkname)))):
            self.pool.drain()  # an unfinished file job writes at, above or below this path
        pfd = self.parent(parts, h.name)
        if h.type == DIR:
            made = True
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                made = False
                if not stat.S_ISDIR(os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode):
                    self.remove(pfd, base)
                    os.mkdir(base, 0o700, dir_fd=pfd)
                    made = True
            # made in a plain directory: it is plain too, and owned by our ids
            made_plain = made and pfd in self._plain
            self.dirs.append((parts, h, made_plain))
            key = tuple(parts)
            if key not in self._fds:  # its entries usually follow: open it now, from its parent
                fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
                self._cache(key, fd, made_plain or (not made and _plain_dir(fd)))
            return
        if h.type == REG:
            if h.size <= _POOLED_MAX:
                self.pool.add(tuple(parts), h.size, (parts, h, _read_all(read, h.size), pfd, pfd in self._plain))
            else:
                self.write_file(parts, h, read, pfd, pfd in self._plain, False)
            return
        self.remove(pfd, base)
        if h.type == LNK:
            self.hardlink(pfd, base, h)
            return
        if h.type == SYM:
            os.symlink(h.linkname, base, dir_fd=pfd)
        elif h.type in (CHR, BLK):
            if not self.devices:  # as Docker and containers/storage do; a container's /dev is its own mount
                if parts[0] != "dev":
                    self.warn(f"skipping device node /{'/'.join(parts)}: only the host's root can create device nodes")
                return
            kind = stat.S_IFCHR if h.type == CHR else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(h.devmajor, h.devminor), dir_fd=pfd)
        elif h.type == FIFO:
            os.mkfifo(base, 0o600, dir_fd=pfd)
        self.meta_path(pfd, base, h)

    def _write_queued(self, item: _QueuedFile, in_worker: bool) -> None:
        parts, h, data, pfd, plain = item
        self.write_file(parts, h, data, pfd, plain, in_worker)

    def write_file(self, parts: list[str], h: Header, data: bytes | Callable[[int], bytes], pfd: int,
                   plain: bool, in_worker: bool) -> None:
        """Create a regular file (replacing what is there, never writing through it) with its metadata.

        In a pool's worker, replacing a directory raises `Retry` (that invalidates cached fds):
        the pool then calls this again in the extracting thread, which resolves the parent anew.
        """
        base = parts[-1]
        if not in_worker:
            pfd = self.parent(parts, h.name)
            plain = pfd in self._plain
        mode = h.mode & 0o7777
        exact = plain and not mode & ~self.exact_modes  # open() gives this mode: no fchmod
        try:
            try:
                fd = os.open(base, _NEW_FILE, mode if exact else 0o600, dir_fd=pfd)
            except FileExistsError:  # a later entry replaces an earlier one
                if stat.S_ISDIR(os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode):
                    if in_worker:
                        raise Retry() from None
                    self.remove(pfd, base)
                else:
                    os.unlink(base, dir_fd=pfd)
                fd = os.open(base, _NEW_FILE, mode if exact else 0o600, dir_fd=pfd)
            try:
                if isinstance(data, bytes):
                    if data:
                        _write_all(fd, data)
                else:
                    out = SparseWriter(fd)  # a layer's runs of zeros are written as holes
                    while chunk := data(CHUNK):
                        out.write(chunk)
                    out.close()
                if self.is_root and not (plain and (h.uid, h.gid) == self.ids):
                    os.fchown(fd, h.uid, h.gid)
                if not exact:
                    os.fchmod(fd, mode)
                self._set_xattrs(fd, h)
                os.utime(fd, (h.mtime, h.mtime))
            finally:
                os.close(fd)
        except ValueError as exc:
            raise ImageFormatError(f"tar entry {h.name!r}: {exc}") from None

    def hardlink(self, pfd: int, base: str, h: Header) -> None:
        target = split_name(h.linkname)
        if not target:
            raise ImageFormatError(f"tar entry {h.name!r} is a hardlink to the root directory")
        try:
            tfd = self.open_dir(target[:-1], h.name, create=False)
        except FileNotFoundError:
            tfd = -1
        try:
            if tfd >= 0:
                try:
                    st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        raise ImageFormatError(f"tar entry {h.name!r} is a hardlink to a directory")
                    os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
                    return
                except FileNotFoundError:
                    pass
        finally:
            if tfd >= 0:
                os.close(tfd)
        for lower in self.lowers:  # snapshot format: the target lives in a lower layer; copy it
            if self._copy_from_lower(lower, target, pfd, base, h.name):
                return
        raise ImageFormatError(f"tar entry {h.name!r} is a hardlink to {h.linkname!r}, which does not exist")

    def _copy_from_lower(self, lower: Path, target: list[str], pfd: int, base: str, name: str) -> bool:
        sub = _Extractor(lower, True, (), self.warn)
        try:
            try:
                dfd = sub.open_dir(target[:-1], name, create=False)
            except (FileNotFoundError, ImageFormatError):
                return False
            try:
                src = os.open(target[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError:
                return False
            finally:
                os.close(dfd)
        finally:
            sub.close()
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                return False
            out = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                while data := os.read(src, CHUNK):
                    _write_all(out, data)
                if self.is_root:
                    os.fchown(out, st.st_uid, st.st_gid)
                os.fchmod(out, stat.S_IMODE(st.st_mode))
                os.utime(out, ns=(st.st_mtime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(src)
        return True

    def whiteout(self, parts: list[str], h: Header) -> None:
        name = h.name
        base = parts[-1]
        if base == WH_OPAQUE:
            dfd = self.open_dir(parts[:-1], name, create=True)
            try:
                if self.overlay:
                    self._require_root(name)
                    os.setxattr(dfd, self.opaque_xattr, b"y")
                else:
                    self._drop_cache()
                    for child in os.listdir(dfd):
                        self.remove(dfd, child)
            finally:
                os.close(dfd)
            return
        if base.startswith(WH_META_PREFIX):  # other `.wh..wh.` names (aufs metadata): ignored
            return
        victim = base[len(WH_PREFIX):]
        if victim in ("", ".", "..") or "/" in victim:
            raise ImageFormatError(f"tar entry {name!r} is a whiteout of {victim!r}; refusing it")
        pfd = self.parent(parts, name)
        self.remove(pfd, victim)
        if self.overlay:
            self._require_root(name)
            os.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
            os.utime(victim, (h.mtime, h.mtime), dir_fd=pfd, follow_symlinks=False)  # committed again, same layer

    def _require_root(self, name: str) -> None:
        if not self.is_root:
            raise StoreError(f"layer entry {name!r}: overlay whiteouts need root (device nodes, trusted xattrs)",
                             hint="run pybuild as root")

    def meta_fd(self, fd: int, h: Header, owned: bool = False) -> None:
        """Set ownership (unless `owned`: it is already right), mode, xattrs and mtime."""
        if self.is_root and not owned:
            os.fchown(fd, h.uid, h.gid)
        os.fchmod(fd, h.mode & 0o7777)
        self._set_xattrs(fd, h)
        os.utime(fd, (h.mtime, h.mtime))

    def meta_path(self, pfd: int, base: str, h: Header) -> None:
        if self.is_root:
            os.chown(base, h.uid, h.gid, dir_fd=pfd, follow_symlinks=False)
        if h.type != SYM:
            os.chmod(base, h.mode & 0o7777, dir_fd=pfd)
        if h.xattrs and h.type != SYM:
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                self._set_xattrs(f"/proc/self/fd/{fd}", h)
            finally:
                os.close(fd)
        os.utime(base, (h.mtime, h.mtime), dir_fd=pfd, follow_symlinks=False)

    def _set_xattrs(self, target: int | str, h: Header) -> None:
        for key, value in h.xattrs:
            if key.startswith(OVERLAY_XATTR_PREFIXES):
                continue  # a layer must never smuggle overlay semantics into a snapshot
            try:
                os.setxattr(target, key, value)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                    raise
                self.warn(f"{h.name}: cannot set xattr {key}: {exc.strerror}")

    def finish(self) -> None:
        """Set directories' metadata last (deepest first), so adding entries did not disturb it."""
        self.pool.drain()
        for parts, h, made_plain in reversed(self.dirs):
            key = tuple(parts)
            try:
                dfd = self._fds.get(key)
                if dfd is None:
                    dfd = self.open_dir(key, h.name, create=False)
                    self._cache(key, dfd, False)
            except (FileNotFoundError, ImageFormatError):
                continue  # removed or replaced by a later entry
            self.meta_fd(dfd, h, owned=made_plain and (h.uid, h.gid) == self.ids)


def _read_all(read: Callable[[int], bytes], size: int) -> bytes:
    """All `size` bytes of an entry (`read` raises when the tar ends first)."""
    data = read(size)
    if len(data) == size:
        return data
    pieces, got = [data], len(data)
    while got < size and (more := read(size - got)):
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def extract(stream: IO[bytes], dest: str | os.PathLike[str], *, overlay: bool = False,
            lowers: Sequence[Path] = (), warn: Warn = log_warning) -> None:
    """Unpack a layer tar into the existing directory `dest`, confined to it.

    `overlay=True` writes the overlay (snapshot) form: whiteouts become 0/0 character devices
    and opaque directories get `trusted.overlay.opaque=y`; `lowers` (top first) are searched
    for hardlink targets from lower layers. `overlay=False` applies whiteouts by deleting.
    Raises ImageFormatError for a hostile or malformed tar; `dest` may then hold a partial result.
    """
    ex = _Extractor(Path(dest), overlay, lowers, warn)
    try:
        for h, read in iter_tar(stream):
            try:
                ex.apply(h, read)
            except ValueError as exc:
                raise ImageFormatError(f"tar entry {h.name!r}: {exc}") from None
        ex.finish()
    finally:
        ex.close()
