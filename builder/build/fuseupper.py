"""A fuse-overlayfs upper dir made into what the kernel's overlayfs leaves, before it is committed.

The rootless fallback (`runtime.overlay.driver()` == "fuse-overlayfs") leaves an upper that says
the same files in another form, so its layer would differ from the kernel overlay's (and a root
build's) of the same step. What fuse-overlayfs (1.10, Debian's) does and what we make of it:

- every directory it creates (mkdir) is opaque: `user.fuseoverlayfs.opaque=y` (`trusted.overlay.opaque`
  when it can) plus an empty `.wh..wh..opq` file in it. The kernel marks a new directory opaque only
  when it replaces something (it is made over a whiteout). Kept, in the form the store's unpacker
  writes (`user.overlay.opaque` in a user namespace), where the lower layers show something at its
  path; dropped where they show nothing (it would hide nothing). The file always goes.
- whiteouts: 0/0 character devices (kernel form), or `.wh.NAME` files where mknod is refused (made
  devices here). It also whites out names no lower layer shows (a name a lower layer deleted, a
  name under a new directory, and `.wh..opq`, its own marker seen as a whiteout): dropped.
- a copied-up regular file carries `user.fuseoverlayfs.origin` (its lower path): removed.
- a directory it copies up gets the lower's times, but copying a child up into it (a rename from
  the work dir) moves its mtime; the kernel restores it. So a copied-up directory whose upper holds
  only copies-up (files whose origin is their own path, copied-up directories) gets the lower
  directory's times back. Any other entry (new, replaced, whited out)
  changed its entries: then its mtime stays as fuse-overlayfs left it (the time of the last change,
  as the kernel's).

Not recoverable from the upper: a temporary entry made and removed in a directory whose other
entries are copies-up (the kernel gives the directory the time of the removal, we the lower's),
a `touch` of such a directory after its children were copied up, and a symlink of a lower layer
copied up by `chown -h` (fuse-overlayfs makes it anew, with the current time: we take it for a
new symlink, as one `ln -sf` made).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

from builder.build.fsview import RootView
from builder.oci.layer.whiteout import (OPAQUE_XATTR, OPAQUE_XATTRS, USER_OPAQUE_XATTR, WH_OPAQUE, WH_PREFIX)
from builder.oci.layer.write import read_xattrs

__all__ = ["canonicalize"]

ORIGIN_XATTR = "user.fuseoverlayfs.origin"


def canonicalize(upper: str | os.PathLike[str], lowers: Sequence[str | os.PathLike[str]]) -> None:
    """Rewrite the fuse-overlayfs upper dir `upper` in place into the kernel overlay's form
    (see the module docstring); `lowers` are the lower dirs it was mounted on, lowest first."""
    from runtime.userns import in_user_namespace

    view = RootView(list(reversed(lowers))) if lowers else None
    opaque = USER_OPAQUE_XATTR if os.geteuid() == 0 and in_user_namespace() else OPAQUE_XATTR
    _Walk(view, opaque).directory(os.fspath(upper), "", view is not None)


class _Walk:
    def __init__(self, view: RootView | None, opaque_xattr: str) -> None:
        self.view, self.opaque_xattr = view, opaque_xattr

    def directory(self, path: str, rel: str, lower_dir: bool) -> None:
        """Fix the directory `path` (at `rel`) and below. `lower_dir`: the lower layers show a
        directory here that this one merges with (a copy-up), so names below may be visible."""
        before = os.lstat(path)
        below = set(self.view.listdir(rel)) if lower_dir and self.view is not None else set()
        changed = touched = False
        copies = 0  # entries only copied up (their copy into this directory moved its mtime)
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            child = f"{rel}/{e.name}" if rel else e.name
            st = e.stat(follow_symlinks=False)
            if e.name == WH_OPAQUE and stat.S_ISREG(st.st_mode):  # its opaque marker file (the xattr says it too)
                os.unlink(e.path)
                touched = True
                continue
            victim = _whiteout_of(e.name, st)
            if victim is not None:
                if victim not in below:  # hides nothing (`.wh.` names never are: `.wh..opq` is its marker)
                    os.unlink(e.path)
                    touched = True
                    continue
                if victim != e.name:  # a `.wh.NAME` file: a 0/0 device, as the kernel makes it, where allowed
                    touched |= _to_device(e.path, os.path.join(path, victim), st)
                changed = True
                continue
            if stat.S_ISDIR(st.st_mode):
                same = self._dir(e.path, child, e.name in below)
            else:  # a symlink, fifo or device node is new here: fuse-overlayfs copies none up as it was
                same = stat.S_ISREG(st.st_mode) and _take_origin(e.path) == child and e.name in below
            changed |= not same
            copies += same
        if rel and lower_dir and copies and not changed:
            lower = self.view.lstat(rel) if self.view is not None else None
            if lower is not None:
                os.utime(path, ns=(lower.st_atime_ns, lower.st_mtime_ns), follow_symlinks=False)
                return
        if touched:
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns), follow_symlinks=False)

    def _dir(self, path: str, rel: str, visible: bool) -> bool:
        """Fix a subdirectory's opaque mark and its content; True when it is a plain copy-up."""
        xattrs = _xattrs(path)
        marked = any(xattrs.get(k) == b"y" for k in OPAQUE_XATTRS) or os.path.lexists(os.path.join(path, WH_OPAQUE))
        keep = marked and visible  # it replaced what the lower layers show here
        for k in OPAQUE_XATTRS:
            if k in xattrs and not (keep and k == self.opaque_xattr):
                os.removexattr(path, k, follow_symlinks=False)
        if keep and xattrs.get(self.opaque_xattr) != b"y":
            os.setxattr(path, self.opaque_xattr, b"y", follow_symlinks=False)
        lower = self.view.lstat(rel) if visible and self.view is not None else None
        copied_up = not marked and lower is not None and stat.S_ISDIR(lower.st_mode)
        self.directory(path, rel, copied_up)
        return copied_up


def _whiteout_of(name: str, st: os.stat_result) -> str | None:
    """The name a whiteout entry hides (a 0/0 device, or an empty `.wh.NAME` file); None if not one."""
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return name
    if stat.S_ISREG(st.st_mode) and st.st_size == 0 and name.startswith(WH_PREFIX) and len(name) > len(WH_PREFIX):
        return name[len(WH_PREFIX):]
    return None


def _to_device(wh_file: str, victim: str, st: os.stat_result) -> bool:
    """Replace the whiteout file `wh_file` by a 0/0 device `victim`; False when mknod is refused
    (an old kernel in a user namespace: the file stays, and `write_dir` reads it as a whiteout)."""
    try:
        os.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except PermissionError:
        return False
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    os.unlink(wh_file)
    return True


def _take_origin(path: str) -> str | None:
    """A copied-up file's `user.fuseoverlayfs.origin` (its lower path), removed from it."""
    try:
        value = os.getxattr(path, ORIGIN_XATTR, follow_symlinks=False)
    except OSError:
        return None
    os.removexattr(path, ORIGIN_XATTR, follow_symlinks=False)
    return value.rstrip(b"\0").decode(errors="surrogateescape")


def _xattrs(path: str) -> dict[str, bytes]:
    """The opaque-marker xattrs of `path`."""
    return {k: v for k, v in read_xattrs(path).items() if k in OPAQUE_XATTRS}
