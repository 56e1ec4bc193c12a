"""`LayerWriter`: makes entries in a layer directory (an overlay upperdir or a plain directory).

Shared by COPY (`files.copy`) and archive extraction (`files.extract`): it creates the parents an
entry needs (copying up the metadata of directories the image below already has, else 0755 owned
by the `--chown` owner), clears what is in the way, and sets an entry's owner, mode and times
(directory times last, in `close`, once nothing more is written below them).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from builder.build.files.ownership import Chmod
from builder.build.files.reuse import Reuse
from builder.build.fsview import RootView, split_path, stacked
from builder.errors import BuildError

__all__ = ["LayerWriter"]


class LayerWriter:
    """Writes into `layer_dir`, creating parents with copied-up or default metadata.

    `target` is the image below (None: nothing below, or `--link`); `owner` and `chmod` are the
    step's `--chown` and `--chmod`; `reuse`, when set, hears of every entry removed."""

    def __init__(self, layer_dir: Path, target: RootView | None, owner: tuple[int, int] | None,
                 chmod: Chmod | None) -> None:
        self.layer = layer_dir
        self.target = target
        self.owner = owner
        self.chmod = chmod
        self.reuse: Reuse | None = None
        self.cut = len(str(layer_dir)) + 1  # host path -> layer path
        self.dir_times: list[tuple[str, int, int]] = []
        self.view = stacked(layer_dir, target)  # what the step sees: this layer over the image
        self._may_chown = os.geteuid() == 0  # asked once per file copied: asked the kernel once

    def host(self, rel: str) -> str:
        return os.path.join(self.layer, *split_path(rel))

    def is_dir(self, rel: str) -> bool:
        """True when `rel` is a directory in the layer over the target (symlinks followed)."""
        return self.view.is_dir(rel)

    def resolve(self, rel: str, *, follow_last: bool = True, within: str = "") -> str:
        """`rel` with symlinks followed in this layer over the target image (`RootView.resolve`)."""
        return self.view.resolve(rel, follow_last=follow_last, within=within)

    def ensure_dir(self, rel: str, *, plain: bool = False) -> str:
        """Make the directory `rel` exist, following symlinks in the root, and return where it is
        (resolved). A new directory is 0755 (an octal --chmod's, unless `plain`: as BuildKit's
        unpack makes an archive's destination) owned by the `--chown` owner, and takes a setgid
        parent's group and bit as a plain mkdir does; an existing one of the image below is copied
        up. A file of the image in the way is an error, never replaced (BuildKit: not a directory)."""
        done = ""
        for name in split_path(rel):
            want = f"{done}/{name}" if done else name
            sub = self.resolve(want)
            if sub != want:  # followed a link: its target may need parents of its own
                done = self.ensure_dir(sub, plain=plain)
                continue
            self._mkdir(sub, done, plain)
            done = sub
        return done

    def place(self, rel: str) -> str:
        """Where a new entry named `rel` goes: its parent made (symlinks followed), the last
        component kept as it is (an entry replaces what is at its own path)."""
        parts = split_path(rel)
        parent = self.ensure_dir("/".join(parts[:-1]))
        return f"{parent}/{parts[-1]}" if parent else parts[-1] if parts else ""

    def _mkdir(self, sub: str, parent: str, plain: bool) -> None:
        host = self.host(sub)
        try:
            st = os.lstat(host)
            if stat.S_ISDIR(st.st_mode):
                return
            self.remove(host, False)  # this step wrote a file here; a directory replaces it
        except FileNotFoundError:
            pass
        below = self.target.lstat(sub) if self.target is not None else None
        if below is not None and stat.S_ISDIR(below.st_mode):
            os.mkdir(host)
            os.chmod(host, stat.S_IMODE(below.st_mode))
            self._chown(host, (below.st_uid, below.st_gid))
            os.utime(host, ns=(below.st_atime_ns, below.st_mtime_ns))
            return
        if below is not None:
            raise BuildError(f"mkdir /{sub}: not a directory")
        os.mkdir(host)
        octal = None if plain or self.chmod is None else self.chmod.octal
        up = self.view.lstat(parent) if parent else None  # the image's root is never setgid
        setgid = octal is None and up is not None and bool(up.st_mode & stat.S_ISGID)
        os.chmod(host, (0o755 | stat.S_ISGID) if setgid else 0o755 if octal is None else octal)
        owner = self.owner or (0, up.st_gid if setgid and up is not None else 0)
        self._chown(host, owner)

    def clear(self, host: str, want_dir: bool) -> None:
        """Remove what is in the way of a new entry at `host` (a dir stays for a dir)."""
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return
            self.remove(host, True)
        else:
            self.remove(host, False)

    def remove(self, host: str, is_dir: bool) -> None:
        """Remove an entry of the layer (and forget what `reuse.written` said of it)."""
        if is_dir:
            shutil.rmtree(host)
        else:
            os.unlink(host)
        if self.reuse is not None:
            self.reuse.forget(host[self.cut:], is_dir)

    def _chown(self, host: str, ids: tuple[int, int]) -> None:
        try:
            os.lchown(host, *ids)
        except PermissionError:
            if os.geteuid() == 0:
                raise

    def finish_entry(self, host: str, st_mode: int, mtime_ns: int | None, atime_ns: int | None = None,
                     is_link: bool = False, src_owner: tuple[int, int] | None = None) -> None:
        """Set a new entry's owner (`src_owner`, else the step's, else 0:0), mode and times."""
        is_dir = stat.S_ISDIR(st_mode)
        self._chown(host, src_owner if src_owner is not None else (self.owner or (0, 0)))
        if not is_link:
            mode = stat.S_IMODE(st_mode)
            if self.chmod is not None:
                mode = self.chmod.apply(mode, is_dir)
            os.chmod(host, mode)
        if mtime_ns is not None:
            if is_dir:
                self.dir_times.append((host, atime_ns or mtime_ns, mtime_ns))
            else:
                os.utime(host, ns=(atime_ns or mtime_ns, mtime_ns), follow_symlinks=not is_link)

    def close(self) -> None:
        """Set the times of the directories written, now that nothing more is written below them."""
        for host, atime, mtime in reversed(self.dir_times):
            os.utime(host, ns=(atime, mtime), follow_symlinks=False)
        self.dir_times.clear()

    def _mode(self, mode: int, is_dir: bool) -> int:
        return self.chmod.apply(mode, is_dir) if self.chmod is not None else stat.S_IMODE(mode)

