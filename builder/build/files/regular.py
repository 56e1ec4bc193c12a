"""Copying one regular file into a layer: bytes (in-kernel where possible), owner, mode, times, xattrs.

    copy_regular(src, dst, owner, mode, st, chown, digest=False) -> (inode, sha256 | None)
    copy_plain(src, dst)              bytes only, into a new 0600 file (heredocs, downloads)
    has_xattrs(path) -> bool          whether a copy would carry extended attributes

Extended attributes are copied (file capabilities such as `security.capability` matter), except
overlayfs' own (`trusted.overlay.*`) and SELinux labels, as Docker does.
"""

from __future__ import annotations

import errno
import os
import shutil

__all__ = ["copy_plain", "copy_regular", "has_xattrs"]

_SKIPPED_XATTRS = ("trusted.overlay.", "security.selinux")


def copy_regular(src: str, dst: str, owner: tuple[int, int], mode: int, st: os.stat_result, chown: bool,
                 digest: bytes | bool = False) -> tuple[int, bytes | None]:
    """Copy one regular file's bytes, owner, mode, times and xattrs, working on descriptors.

    With `digest`, also return the new file's inode and the sha256 of the bytes written: True
    hashes them while copying; a known digest of the source (for exactly `st`) is returned when
    the source did not change while it was copied (its ctime would have moved). The digest is
    None when unsure, or when the source had xattrs (such a copy is never linked by a `Reuse`)."""
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            sha: bytes | None = None
            if digest is True:
                sha = _copy_fd_hashed(sfd, dfd)
            else:
                _copy_fd(sfd, dfd, st.st_size)
                if digest:
                    now = os.fstat(sfd)
                    same = (now.st_ino, now.st_ctime_ns, now.st_mtime_ns, now.st_size) == \
                        (st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)
                    sha = digest if same and isinstance(digest, bytes) else None
            if chown:
                os.fchown(dfd, *owner)
            os.fchmod(dfd, mode)  # after fchown, which clears set-id bits
            if _copy_xattrs(sfd, dfd):
                sha = None
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            return (os.fstat(dfd).st_ino if digest else 0), sha
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_fd_hashed(sfd: int, dfd: int) -> bytes:
    """Copy through memory, returning the sha256 of exactly the bytes written."""
    import hashlib

    h = hashlib.sha256()
    while chunk := os.read(sfd, 1 << 20):
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dfd, view):]
    return h.digest()


def _copy_fd(sfd: int, dfd: int, size: int) -> None:
    """copy_file_range (in-kernel, reflinks where the filesystem can), else read/write."""
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(sfd, dfd, min(left, 1 << 30))
            if n == 0:
                break
            left -= n
        if left <= 0:
            while chunk := os.read(sfd, 1 << 20):  # the file grew while we copied: take the rest
                os.write(dfd, chunk)
            return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while chunk := os.read(sfd, 1 << 20):
        os.write(dfd, chunk)


def has_xattrs(path: str) -> bool:
    """Whether a copy of `path` would carry xattrs (see `_copy_xattrs`); True when unknown."""
    try:
        return any(not n.startswith(_SKIPPED_XATTRS) for n in os.listxattr(path, follow_symlinks=False))
    except OSError:
        return True


def _copy_xattrs(src: str | int, dst: str | int) -> bool:
    """Copy extended attributes (file capabilities such as `security.capability` matter);
    overlayfs' own attributes and SELinux labels stay behind. False when there were none to copy."""
    try:
        names = os.listxattr(src) if isinstance(src, int) else os.listxattr(src, follow_symlinks=False)
    except OSError:
        return True  # unknown
    found = False
    for name in names:
        if name.startswith(_SKIPPED_XATTRS):
            continue
        found = True
        try:
            value = os.getxattr(src, name) if isinstance(src, int) else os.getxattr(src, name, follow_symlinks=False)
            if isinstance(dst, int):
                os.setxattr(dst, name, value)
            else:
                os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError:
            continue  # the destination filesystem may not take it (Docker ignores these too)
    return found


def copy_plain(src: str, dst: str) -> None:
    """Copy the bytes of `src` into a new file `dst` (0600; the caller sets its metadata)."""
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
