"""The container's root: an overlayfs of read-only snapshot dirs plus one upper dir.

The mount data of one overlay must fit in a page, and the kernel stacks at most 500 lower dirs.
We pass short relative names (symlinks `l/0`, `l/1`, ... to the real dirs, resolved from the
scratch dir we chdir into), and when there are more lower dirs than one mount takes, the lowest
ones are first merged into read-only overlays (`g0`, `g1`, ...) that then serve as lower dirs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from runtime import _linux, userns

MAX_LOWER = 500  # OVL_MAX_STACK
GROUP = 400
OPTIONS = "redirect_dir=off,index=off,metacopy=off,xino=off"


def _names(scratch: Path, prefix: str, dirs: Sequence[Path]) -> list[str]:
    (scratch / prefix).mkdir(exist_ok=True)
    names = []
    for i, d in enumerate(dirs):
        name = f"{prefix}/{i}"
        os.symlink(d, scratch / name)
        names.append(name)
    return names


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path, scratch: Path,
                  flags: int = 0) -> None:
    """Mount `lower` (lowest first) + `upper` on `target`. Call inside a private mount namespace:
    nested group mounts are left mounted there and vanish with it."""
    top_first = list(reversed(lower))
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        if len(top_first) > MAX_LOWER:
            keep = top_first[:MAX_LOWER - -(-len(top_first) // GROUP)]
            rest = top_first[len(keep):]
            groups = []
            for g, start in enumerate(range(0, len(rest), GROUP)):
                chunk = rest[start:start + GROUP]
                if len(chunk) == 1:
                    groups.append(chunk[0])
                    continue
                mnt = scratch / f"g{g}"
                mnt.mkdir()
                data = "lowerdir=" + ":".join(_names(scratch, f"gl{g}", chunk))
                _linux.mount("overlay", str(mnt), "overlay", _linux.MS_RDONLY, data)
                groups.append(mnt)
            top_first = keep + groups
        lowers = ":".join(_names(scratch, "l", top_first))
        os.symlink(upper, scratch / "u")
        os.symlink(work, scratch / "w")
        if driver() == "fuse-overlayfs":
            _fuse_overlayfs(lowers, target, flags)
            return
        data = f"lowerdir={lowers},upperdir=u,workdir=w,{options()}"
        _linux.mount("overlay", str(target), "overlay", flags, data)
    finally:
        os.chdir(cwd)


def options() -> str:
    """The mount options: in a user namespace overlayfs keeps its whiteout and opaque marks in
    `user.overlay.*` xattrs (`userxattr`), which allows no redirect to be followed."""
    if userns.in_user_namespace():
        return "userxattr," + OPTIONS.replace("redirect_dir=off", "redirect_dir=nofollow")
    return OPTIONS


_driver: str | None = None


def driver() -> str:
    """`overlay` (the kernel's), or `fuse-overlayfs` when rootless and the kernel refuses overlayfs
    in a user namespace (before Linux 5.11); $PYBUILD_OVERLAY=fuse-overlayfs forces it."""
    global _driver
    if _driver is None:
        forced = os.environ.get("PYBUILD_OVERLAY", "")
        if forced in ("overlay", "fuse-overlayfs"):
            _driver = forced
        elif not userns.in_user_namespace():
            _driver = "overlay"
        else:
            _driver = "overlay" if kernel_overlay_works() else "fuse-overlayfs"
    return _driver


def kernel_overlay_works() -> bool:
    """Whether the kernel mounts an overlay here (tried in a throwaway mount namespace of a child)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pybuild-ovl-") as tmp:
        for d in ("l", "u", "w", "m"):
            os.mkdir(f"{tmp}/{d}")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - exits by os._exit
            code = 1
            try:
                _linux.unshare(_linux.CLONE_NEWNS)
                _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
                _linux.mount("overlay", f"{tmp}/m", "overlay", 0,
                             f"lowerdir={tmp}/l,upperdir={tmp}/u,workdir={tmp}/w,{options()}")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0


def _fuse_overlayfs(lowers: str, target: Path, flags: int) -> None:
    """Mount with fuse-overlayfs (Debian package), which stays in the container's pid namespace
    until it ends, and in the mount namespace we leave (the container's init's parent's). Relative
    names are resolved from the scratch dir (our cwd)."""
    import shutil

    binary = shutil.which("fuse-overlayfs")
    if binary is None:
        raise OSError(95, "the kernel refuses overlayfs here and fuse-overlayfs is not installed "
                          "(apt-get install fuse-overlayfs)", str(target))
    here = os.getcwd()
    absolute = ":".join(os.path.join(here, name) for name in lowers.split(":"))
    opts = f"lowerdir={absolute},upperdir={here}/u,workdir={here}/w"
    if flags & _linux.MS_NODEV:
        opts += ",nodev"
    pid = os.posix_spawn(binary, [binary, "-o", opts, str(target)], os.environ)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(5, f"fuse-overlayfs exited {os.waitstatus_to_exitcode(status)}", str(target))
    # We go on in a copy of this mount namespace, so the container's pivot_root leaves fuse-overlayfs
    # its root: it opens some paths by name (a fifo's or device's in the upper dir, /proc/self/fd/N),
    # and through its own mount as `/` such a lookup would wait for itself (a chmod of a fifo hung).
    _linux.unshare(_linux.CLONE_NEWNS)
