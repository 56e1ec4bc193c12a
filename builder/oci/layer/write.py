"""Deterministic layer tars: of a directory or overlay upperdir (`write_dir`), or of another tar (`rewrite_tar`).

`write_dir` turns an overlay upperdir (a change set) into its OCI form: whiteout device nodes
and xattrs become `.wh.` entries and opaque directories get `.wh..wh..opq` (see `whiteout`).
"""

from __future__ import annotations

import operator
import os
import stat
from dataclasses import replace
from functools import partial
from typing import IO

from builder.errors import ImageFormatError, StoreError
from builder.oci.layer.decode import iter_tar
from builder.oci.layer.encode import Sink, TarWriter
from builder.oci.layer.entry import BLK, CHUNK, CHR, DIR, FIFO, LNK, REG, SYM, Header, Warn, log_warning, split_name
from builder.oci.layer.whiteout import (OPAQUE_XATTRS, UNSTORED_XATTR_PREFIXES, UNSUPPORTED_XATTRS, WH_OPAQUE,
                                        WH_PREFIX, WHITEOUT_XATTRS)
from builder.util.sparse import hole_reader

__all__ = ["write_dir", "rewrite_tar", "read_xattrs"]


def read_xattrs(path: str) -> dict[str, bytes]:
    """Every xattr of `path` (not following a symlink); none when they cannot be listed."""
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


_NAME = operator.attrgetter("name")


def _BYTES(e: os.DirEntry[str]) -> bytes:
    return os.fsencode(e.name)


def _read_upto(fd: int, size: int) -> bytes:
    """Up to `size` bytes of `fd` (fewer only if the file is shorter now)."""
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            break
        data += more
    return data


def write_dir(root: str | os.PathLike[str], sink: Sink, *, epoch: int | None = None,
              warn: Warn = log_warning) -> None:
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
            entries = list(os.scandir(abs_dir))
            # byte order; for ASCII names (the usual case) the same as str order, without encoding each
            entries.sort(key=_NAME if all(e.name.isascii() for e in entries) else _BYTES)
        except OSError as exc:
            raise StoreError(f"cannot read {abs_dir}: {exc.strerror}") from None
        subdirs: list[tuple[str, str]] = []
        for e in entries:
            if e.name == WH_OPAQUE:  # fuse-overlayfs' own marker beside its opaque xattr (see build/fuseupper)
                continue
            rel = rel_dir + e.name
            st = e.stat(follow_symlinks=False)
            xa = read_xattrs(e.path)
            bad = [k for k in xa if k in UNSUPPORTED_XATTRS]
            if bad:
                raise StoreError(f"{e.path}: overlay {bad[0]} is not supported",
                                 hint="mount the overlay with redirect_dir=off,metacopy=off")
            kept = tuple(sorted((k, v) for k, v in xa.items() if not k.startswith(UNSTORED_XATTR_PREFIXES)))
            mode = stat.S_IMODE(st.st_mode)
            whiteout = (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0) or (
                stat.S_ISREG(st.st_mode) and st.st_size == 0 and any(k in xa for k in WHITEOUT_XATTRS))
            if whiteout:
                writer.add(Header(rel_dir + WH_PREFIX + e.name, REG, 0o600, mtime=clamp(st.st_mtime)))
            elif e.name.startswith(WH_PREFIX) and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                # already in OCI form (fuse-overlayfs' whiteout where mknod is refused)
                writer.add(Header(rel, REG, 0o600, mtime=clamp(st.st_mtime)))
            elif stat.S_ISDIR(st.st_mode):
                writer.add(Header(rel, DIR, mode, st.st_uid, st.st_gid, mtime=clamp(st.st_mtime), xattrs=kept))
                if any(xa.get(k) == b"y" for k in OPAQUE_XATTRS):
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
                    if st.st_size >= CHUNK or st.st_blocks * 512 < st.st_size:  # large or sparse: streamed
                        writer.add(h, hole_reader(fd) if st.st_blocks * 512 < st.st_size else partial(os.read, fd))
                    else:  # the many small files of a tree: one read, one append
                        writer.add_data(h, _read_upto(fd, st.st_size))
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
        xattrs = tuple((k, v) for k, v in h.xattrs if not k.startswith(UNSTORED_XATTR_PREFIXES))
        mtime = min(h.mtime, epoch) if epoch is not None else h.mtime
        writer.add(replace(h, name="/".join(parts), linkname=link, xattrs=xattrs, mtime=mtime), read)
    writer.close()
