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

from runtime import _linux

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
        data = f"lowerdir={lowers},upperdir=u,workdir=w,{OPTIONS}"
        _linux.mount("overlay", str(target), "overlay", flags, data)
    finally:
        os.chdir(cwd)
