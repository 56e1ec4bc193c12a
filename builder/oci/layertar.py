"""Layer tars: deterministic writing, overlay upperdir -> OCI changeset, and safe extraction.

Every tar we read is treated as hostile: names are resolved lexically inside the target,
`..` that would leave it is refused, every parent directory is opened with O_NOFOLLOW (a
symlink is never written through), hardlinks must point inside the target, overlay xattrs
in a tar are dropped, and device nodes are only made by root.

Whiteouts (OCI): `.wh.NAME` deletes NAME from lower layers; `.wh..wh..opq` hides all of a
directory's lower content. In an overlay upperdir they are 0/0 character devices and the
`trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) xattr; `write_dir` converts the
overlay form to OCI, `extract(..., overlay=True)` converts back (for snapshots), and
`extract(..., overlay=False)` applies them to one flat directory (for rootfs exports).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

from builder.errors import ImageFormatError, StoreError
from builder.oci.filepool import FilePool, Retry

__all__ = ["Header", "TarWriter", "encode_header", "write_dir", "rewrite_tar", "iter_tar", "extract", "split_name",
           "WH_PREFIX", "WH_OPAQUE", "REG", "LNK", "SYM", "CHR", "BLK", "DIR", "FIFO", "MAX_PATH"]

log = logging.getLogger("pybuild.layers")

WH_PREFIX = ".wh."
WH_OPAQUE = WH_PREFIX + WH_PREFIX + ".opq"
REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
MAX_PATH = 4096  # PATH_MAX: longer names could not be used inside a container anyway
CHUNK = 1 << 20
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_DROPPED_XATTRS = _OVERLAY_XATTRS + ("security.selinux",)
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_WHITEOUT_XATTRS = ("trusted.overlay.whiteout", "user.overlay.whiteout")
_UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy",
                       "user.overlay.redirect", "user.overlay.metacopy")

Sink = Callable[[bytes], object]
Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Header:
    """One tar entry's metadata (numeric ownership only; xattrs as raw bytes)."""

    name: str
    type: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


# ---------------------------------------------------------------------------- writing

def _num(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: bytes, value: bytes) -> bytes:
    base = len(key) + len(value) + 3  # " " "=" "\n"
    n = len(str(base))
    while len(str(base + n)) != n:
        n += 1
    return b"%d %s=%s\n" % (base + n, key, value)


_USTAR_MAGIC_TO_DEV = b"ustar\x0000" + b"\0" * 64  # magic, version, empty uname and gname


def _ustar(name: bytes, prefix: bytes, h: Header, linkname: bytes, size: int, typ: bytes,
           uid: int, gid: int, mtime: int) -> bytes:
    if h.devmajor >= 8 ** 7 or h.devminor >= 8 ** 7 or len(typ) != 1:
        return _ustar_fields(name, prefix, h, linkname, size, typ, uid, gid, mtime)
    # one formatting pass (the hot path of committing many small files); same bytes as _ustar_fields
    block = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%s%s%07o\0%07o\0%s\0\0\0\0\0\0\0\0\0\0\0\0" % (
        name.ljust(100, b"\0"), h.mode & 0o7777, uid, gid, size, mtime, typ, linkname.ljust(100, b"\0"),
        _USTAR_MAGIC_TO_DEV, h.devmajor, h.devminor, prefix.ljust(155, b"\0"))
    return b"%s%06o\0 %s" % (block[:148], sum(block), block[156:])


def _ustar_fields(name: bytes, prefix: bytes, h: Header, linkname: bytes, size: int, typ: bytes,
                  uid: int, gid: int, mtime: int) -> bytes:
    buf = bytearray(512)
    buf[0:len(name)] = name
    buf[100:108] = _num(h.mode & 0o7777, 8)
    buf[108:116] = _num(uid, 8)
    buf[116:124] = _num(gid, 8)
    buf[124:136] = _num(size, 12)
    buf[136:148] = _num(mtime, 12)
    buf[148:156] = b"        "
    buf[156:157] = typ
    buf[157:157 + len(linkname)] = linkname
    buf[257:265] = b"ustar\x0000"
    buf[329:337] = _num(h.devmajor, 8)
    buf[337:345] = _num(h.devminor, 8)
    buf[345:345 + len(prefix)] = prefix
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    if len(name) <= 100:
        return b"", name
    for i in range(min(len(name) - 1, 155), 0, -1):
        if name[i:i + 1] == b"/" and len(name) - i - 1 <= 100:
            return name[:i], name[i + 1:]
    return None


def encode_header(h: Header) -> bytes:
    """The header block(s) of an entry: ustar, preceded by a PAX header only when needed."""
    name = os.fsencode(h.name + "/" if h.type == DIR and not h.name.endswith("/") else h.name)
    link = os.fsencode(h.linkname)
    pax: list[tuple[bytes, bytes]] = []
    split = _split_ustar(name)
    if split is None:
        pax.append((b"path", name))
        split = (b"", name[:100])
    if len(link) > 100:
        pax.append((b"linkpath", link))
        link = link[:100]
    uid, gid, size, mtime = h.uid, h.gid, h.size, max(h.mtime, 0)
    if uid >= 8 ** 7:
        pax.append((b"uid", b"%d" % uid))
        uid = 0
    if gid >= 8 ** 7:
        pax.append((b"gid", b"%d" % gid))
        gid = 0
    if size >= 8 ** 11:
        pax.append((b"size", b"%d" % size))
        size = 0
    if mtime >= 8 ** 11:
        pax.append((b"mtime", b"%d" % mtime))
        mtime = 0
    for key, value in h.xattrs:
        pax.append((b"SCHILY.xattr." + os.fsencode(key), value))
    out = b""
    if pax:
        payload = b"".join(_pax_record(k, v) for k, v in pax)
        ph = Header("././@PaxHeader", b"x")
        out = _ustar(b"././@PaxHeader", b"", ph, b"", len(payload), b"x", 0, 0, 0) + payload + _pad(len(payload))
    return out + _ustar(split[1], split[0], h, link, size, h.type, uid, gid, mtime)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 512)


class TarWriter:
    """Writes tar entries to a sink, buffered into chunks of about 1 MiB."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buf = bytearray()

    def _out(self, data: bytes) -> None:
        if len(data) >= CHUNK:
            self.flush()
            self._sink(data)
            return
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._sink(bytes(self._buf))
            self._buf = bytearray()

    def add(self, h: Header, read: Callable[[int], bytes] | None = None) -> None:
        """Add an entry; for a regular file, `read(n)` supplies exactly `h.size` bytes."""
        self._out(encode_header(h))
        if h.type != REG or not h.size:
            return
        left = h.size
        while left:
            data = read(min(left, CHUNK)) if read else b""
            if not data:  # the file shrank while we read it: keep the header honest
                data = b"\0" * min(left, CHUNK)
            data = data[:left]
            left -= len(data)
            self._out(data)
        self._out(_pad(h.size))

    def close(self) -> None:
        self._out(b"\0" * 1024)
        self.flush()


def _warn(msg: str) -> None:
    log.warning("%s", msg)


def _xattrs(path: str, drop: tuple[str, ...] = _DROPPED_XATTRS) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
    return out


def write_dir(root: str | os.PathLike[str], sink: Sink, *, epoch: int | None = None, warn: Warn = _warn) -> None:
    """Write the overlay upperdir (or any directory) `root` as a deterministic OCI layer tar.

    Entries are in sorted depth-first order; mtimes are clamped to `epoch`; overlay whiteouts
    become `.wh.` entries; hardlinks within the directory become tar hardlinks; fifos and
    device nodes are kept (as Docker keeps them), sockets are skipped with a warning.
    """
    writer = TarWriter(sink)
    seen: dict[tuple[int, int], str] = {}
    stack: list[tuple[str, str]] = [("", os.fspath(root))]
    clamp = (lambda t: min(int(t), epoch)) if epoch is not None else (lambda t: int(t))
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            entries = sorted(os.scandir(abs_dir), key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            raise StoreError(f"cannot read {abs_dir}: {exc.strerror}") from None
        subdirs: list[tuple[str, str]] = []
        for e in entries:
            rel = rel_dir + e.name
            st = e.stat(follow_symlinks=False)
            xa = _xattrs(e.path, ())
            bad = [k for k in xa if k in _UNSUPPORTED_XATTRS]
            if bad:
                raise StoreError(f"{e.path}: overlay {bad[0]} is not supported",
                                 hint="mount the overlay with redirect_dir=off,metacopy=off")
            kept = tuple(sorted((k, v) for k, v in xa.items() if not k.startswith(_DROPPED_XATTRS)))
            mode = stat.S_IMODE(st.st_mode)
            whiteout = (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0) or (
                stat.S_ISREG(st.st_mode) and st.st_size == 0 and any(k in xa for k in _WHITEOUT_XATTRS))
            if whiteout:
                writer.add(Header(rel_dir + WH_PREFIX + e.name, REG, 0o600, mtime=clamp(st.st_mtime)))
            elif stat.S_ISDIR(st.st_mode):
                writer.add(Header(rel, DIR, mode, st.st_uid, st.st_gid, mtime=clamp(st.st_mtime), xattrs=kept))
                if any(xa.get(k) == b"y" for k in _OPAQUE_XATTRS):
                    writer.add(Header(rel + "/" + WH_OPAQUE, REG, 0o600, mtime=clamp(st.st_mtime)))
                subdirs.append((rel + "/", e.path))
            elif stat.S_ISLNK(st.st_mode):
                writer.add(Header(rel, SYM, 0o777, st.st_uid, st.st_gid, mtime=clamp(st.st_mtime),
                                  linkname=os.readlink(e.path), xattrs=kept))
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    writer.add(Header(rel, LNK, mode, st.st_uid, st.st_gid, mtime=clamp(st.st_mtime),
                                      linkname=seen[key]))
                    continue
                if st.st_nlink > 1:
                    seen[key] = rel
                h = Header(rel, REG, mode, st.st_uid, st.st_gid, st.st_size, clamp(st.st_mtime), xattrs=kept)
                fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    writer.add(h, lambda n, fd=fd: os.read(fd, n))
                finally:
                    os.close(fd)
            elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                typ = FIFO if stat.S_ISFIFO(st.st_mode) else CHR if stat.S_ISCHR(st.st_mode) else BLK
                writer.add(Header(rel, typ, mode, st.st_uid, st.st_gid, mtime=clamp(st.st_mtime),
                                  devmajor=os.major(st.st_rdev) if typ != FIFO else 0,
                                  devminor=os.minor(st.st_rdev) if typ != FIFO else 0, xattrs=kept))
            else:  # a socket: tar has no type for it (Docker's archive skips them too)
                warn(f"skipping socket /{rel}: not stored in layers")
        stack.extend(reversed(subdirs))
    writer.close()


# ---------------------------------------------------------------------------- reading

class _Source:
    """Buffered reads of exact sizes from a stream, with a byte offset for error messages."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def read(self, n: int) -> bytes:
        """Up to n bytes (possibly fewer; none only at the end of the stream)."""
        if self._pos == len(self._buf):
            if n >= CHUNK:
                data = self._raw.read(n)
                self.offset += len(data)
                return data
            self._buf, self._pos = self._raw.read(CHUNK), 0
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        self.offset += len(data)
        return data

    def upto(self, n: int) -> bytes:
        """n bytes, or fewer only at the end of the stream."""
        data = self.read(n)
        while len(data) < n and (more := self.read(n - len(data))):
            data += more
        return data

    def exact(self, n: int, what: str) -> bytes:
        data = self.upto(n)
        if len(data) < n:
            raise ImageFormatError(f"tar is truncated: unexpected end of data in {what} at byte {self.offset}")
        return data


def _parse_num(field: bytes, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU)
        value = int.from_bytes(field[1:], "big")
        return value if field[:1] == b"\x80" else value - (1 << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ImageFormatError(f"tar header has a malformed {what} field {field!r}") from None


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageFormatError("tar has a malformed PAX header") from None
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ImageFormatError("tar has a malformed PAX header")
        key, value = record[:-1].split(b"=", 1)
        out[key] = value
        pos += length
    return out


def iter_tar(stream: IO[bytes]) -> Iterator[tuple[Header, Callable[[int], bytes]]]:
    """Entries of a tar stream (ustar, PAX, GNU long names) with a reader of each one's data.

    The reader must be used before the next entry is requested; unread data is skipped.
    Names are returned as stored (not yet checked: see `split_name`).
    """
    src = _Source(stream)
    pending: dict[bytes, bytes] = {}
    first = True
    while True:
        block = src.upto(512)
        if len(block) < 512:
            if not block and not first:
                return  # a missing end-of-archive marker is tolerated, as GNU tar does
            if not block:
                raise ImageFormatError("not a tar archive: it is empty")
            raise ImageFormatError(f"tar is truncated: partial header at byte {src.offset - len(block)}")
        first = False
        if block == b"\0" * 512:
            return
        try:
            stored = _parse_num(block[148:156], "checksum")
        except ImageFormatError:
            stored = -1
        if stored != sum(block[:148]) + 256 + sum(block[156:]):
            raise ImageFormatError(f"not a tar archive, or corrupt: bad header checksum at byte {src.offset - 512}")
        typ = block[156:157]
        typ = REG if typ in (b"\0", b"7") else typ
        size = _parse_num(block[124:136], "size")
        if typ in (b"x", b"g", b"L", b"K"):
            if size > 1 << 20:
                raise ImageFormatError(f"tar has an oversized {typ.decode()} header ({size} bytes)")
            data = src.exact(size + (-size % 512), "an extended header")[:size]
            if typ == b"x":
                pending.update(_parse_pax(data))
            elif typ == b"L":
                pending[b"path"] = data.split(b"\0", 1)[0]
            elif typ == b"K":
                pending[b"linkpath"] = data.split(b"\0", 1)[0]
            continue
        if typ not in (REG, LNK, SYM, CHR, BLK, DIR, FIFO):
            raise ImageFormatError(f"tar entry type {typ!r} is not supported (at byte {src.offset - 512})")
        name = block[0:100].split(b"\0", 1)[0]
        if block[257:262] == b"ustar" and block[345:346] != b"\0":
            name = block[345:500].split(b"\0", 1)[0] + b"/" + name
        linkname = block[157:257].split(b"\0", 1)[0]
        h = Header(
            name=os.fsdecode(pending.get(b"path", name)), type=typ, mode=_parse_num(block[100:108], "mode") & 0o7777,
            uid=int(pending.get(b"uid") or _parse_num(block[108:116], "uid")),
            gid=int(pending.get(b"gid") or _parse_num(block[116:124], "gid")),
            size=int(pending.get(b"size") or size),
            mtime=int(float(pending.get(b"mtime") or _parse_num(block[136:148], "mtime"))),
            linkname=os.fsdecode(pending.get(b"linkpath", linkname)),
            devmajor=_parse_num(block[329:337], "devmajor"), devminor=_parse_num(block[337:345], "devminor"),
            xattrs=tuple(sorted((os.fsdecode(k[13:]), v) for k, v in pending.items()
                                if k.startswith(b"SCHILY.xattr."))),
        )
        pending = {}
        if h.type != REG:
            h = replace(h, size=0)  # only regular files carry data (hardlinks' sizes are ignored)
        left = [h.size]

        def read(n: int, left: list[int] = left) -> bytes:
            n = min(n, left[0])
            if n <= 0:
                return b""
            data = src.read(n)
            if not data:
                raise ImageFormatError(f"tar is truncated: unexpected end of data in {h.name!r}")
            left[0] -= len(data)
            return data

        yield h, read
        while left[0]:
            read(CHUNK)
        src.exact(-h.size % 512, "padding")


def split_name(name: str) -> list[str]:
    """The path components of a tar name inside the root; refuses names that would leave it."""
    if "\0" in name:
        raise ImageFormatError(f"tar entry name {name!r} contains a NUL byte")
    if len(os.fsencode(name)) > MAX_PATH:
        raise ImageFormatError(f"tar entry name is longer than {MAX_PATH} bytes: {name[:60]!r}...")
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise ImageFormatError(f"tar entry {name!r} points outside the root; refusing it")
            parts.pop()
        else:
            parts.append(p)
    return parts


def rewrite_tar(stream: IO[bytes], sink: Sink, *, epoch: int | None = None) -> None:
    """Re-serialize an existing tar canonically: checked names, numeric owners, no atime/ctime."""
    writer = TarWriter(sink)
    for h, read in iter_tar(stream):
        parts = split_name(h.name)
        if not parts:
            continue  # the root entry "./": extraction never changes the root
        link = h.linkname
        if h.type == LNK:
            link = "/".join(split_name(link))
            if not link:
                raise ImageFormatError(f"tar entry {h.name!r} is a hardlink to the root directory")
        xattrs = tuple((k, v) for k, v in h.xattrs if not k.startswith(_DROPPED_XATTRS))
        mtime = min(h.mtime, epoch) if epoch is not None else h.mtime
        writer.add(replace(h, name="/".join(parts), linkname=link, xattrs=xattrs, mtime=mtime), read)
    writer.close()


# ---------------------------------------------------------------------------- extraction

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_POOLED_MAX = CHUNK  # files up to this size are read into memory and written by the pool's threads
_WRITERS = 2


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


class _Extractor:
    """Applies entries in tar order. Small regular files go to a `FilePool`; any other operation on a
    path that a queued file touches (at, below or above it) drains the pool first, and directory fds
    are closed only when no worker runs, so the result is that of one entry at a time."""

    _MAX_FDS = 64  # directory fds kept open for the next entries' parents

    def __init__(self, dest: Path, overlay: bool, lowers: Sequence[Path], warn: Warn) -> None:
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self.overlay, self.lowers, self.warn = overlay, list(lowers), warn
        self.is_root = os.geteuid() == 0
        self.ids = (os.geteuid(), os.getegid())
        umask = _umask()
        self.exact_modes = 0o777 & ~umask if umask is not None else 0  # modes open(O_CREAT) gives as asked
        self.dirs: list[tuple[list[str], Header, bool]] = []  # (parts, header, made plain by us)
        self._fds: dict[tuple[str, ...], int] = {}
        self._plain: set[int] = set()  # cached dir fds where new files need no fchown/fchmod
        self.pool = FilePool(lambda item, in_worker: self.write_file(*item, in_worker), _WRITERS)

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
            if not self.is_root:
                self.warn(f"skipping device node /{'/'.join(parts)}: only root can create device nodes")
                return
            kind = stat.S_IFCHR if h.type == CHR else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(h.devmajor, h.devminor), dir_fd=pfd)
        elif h.type == FIFO:
            os.mkfifo(base, 0o600, dir_fd=pfd)
        self.meta_path(pfd, base, h)

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
                    while chunk := data(CHUNK):
                        _write_all(fd, chunk)
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
                    os.setxattr(dfd, "trusted.overlay.opaque", b"y")
                else:
                    self._drop_cache()
                    for child in os.listdir(dfd):
                        self.remove(dfd, child)
            finally:
                os.close(dfd)
            return
        if base.startswith(WH_OPAQUE[:8]):  # other `.wh..wh.` names (aufs metadata): ignored
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
            if key.startswith(_OVERLAY_XATTRS):
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
            lowers: Sequence[Path] = (), warn: Warn = _warn) -> None:
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
