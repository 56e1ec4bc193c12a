"""Where ext4 puts new directories: `spread_subdirs(path)` sets the Orlov allocator's "top
directory" hint on `path` (`chattr +T`, FS_TOPDIR_FL), so each directory then made directly in it
starts in a lightly used block group instead of next to `path`.

Why it matters: on an ext4 without a journal, allocating an inode skips every free inode of the
group that was deleted in the last 60 s (360 s while its inode table block is dirty), one
buffer-cache lookup each (`recently_deleted()`, fs/ext4/ialloc.c), so creating files in a group
where many were just removed (a busy /tmp, a context or store directory removed a moment ago)
costs up to ~0.5 ms of CPU per file: unpacking a 20,000-file context took 8-12 s there against
0.6-1 s in a fresh group. The hint is inherited by nothing (only directories made directly in
`path` are spread); other filesystems ignore or refuse it, which is fine.

Used only where big trees are made and soon removed again by one process (`pybuild serve`'s
unpacked contexts), not on the store's tmp/: Orlov prefers the group with the fewest directories,
which is also where a spread tree was just deleted, so spreading every store's churn (a test suite
makes thousands) would leave fresh groups full of recently deleted inodes for the next unpack.
"""

from __future__ import annotations

import os
import sys

__all__ = ["spread_subdirs"]

_TOPDIR_FL = 0x00020000


def _ioctl_numbers() -> tuple[int, int] | None:
    """FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (`_IOR/_IOW('f', 1/2, long)`) for the generic ioctl
    layout (x86, arm, riscv, s390); None on architectures with another layout."""
    if os.uname().machine not in ("x86_64", "aarch64", "i386", "i686", "armv7l", "armv8l", "riscv64", "s390x"):
        return None
    size = 8 if sys.maxsize > 2 ** 32 else 4  # sizeof(long)
    read, write = 2, 1
    return ((read << 30) | (size << 16) | (ord("f") << 8) | 1, (write << 30) | (size << 16) | (ord("f") << 8) | 2)


def spread_subdirs(path: str | os.PathLike[str]) -> bool:
    """Set the top-directory hint on the directory `path` (best effort); whether it is set."""
    import fcntl
    import struct

    numbers = _ioctl_numbers()
    if numbers is None:
        return False
    get, set_ = numbers
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, get, b"\0\0\0\0"))[0]
        if not flags & _TOPDIR_FL:
            fcntl.ioctl(fd, set_, struct.pack("i", flags | _TOPDIR_FL))
        return True
    except OSError:  # not ext2/3/4, or not allowed: the kernel's default placement
        return False
    finally:
        os.close(fd)
