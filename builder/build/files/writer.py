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
from builder.build.fsview import RootView, split_path

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

    def host(self, rel: str) -> str:
        return os.path.join(self.layer, *split_path(rel))

    def is_dir(self, rel: str) -> bool:
        try:
            if stat.S_ISDIR(os.lstat(self.host(rel)).st_mode):
                return True
        except (FileNotFoundError, NotADirectoryError):
            pass
        return self.target is not None and self.target.is_dir(rel)

    def resolve(self, rel: str) -> str:
        """`rel` with symlinks followed in the target image (or as written in this layer)."""
        if self.target is None:
            return "/".join(split_path(rel))
        return self.target.resolve(rel)

    def ensure_dir(self, rel: str, *, plain: bool = False) -> None:
        """Make every directory of `rel` exist in the layer (`plain`: 0755 whatever --chmod says,
        as BuildKit's unpack makes an archive's destination)."""
        parts = split_path(rel)
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            host = self.host(sub)
            try:
                st = os.lstat(host)
                if stat.S_ISDIR(st.st_mode):
                    continue
                self.remove(host, False)
            except FileNotFoundError:
                pass
            below = self.target.lstat(sub) if self.target is not None else None
            if below is not None and stat.S_ISDIR(below.st_mode):
                os.mkdir(host)
                os.chmod(host, stat.S_IMODE(below.st_mode))
                self._chown(host, (below.st_uid, below.st_gid))
                os.utime(host, ns=(below.st_atime_ns, below.st_mtime_ns))
            else:  # BuildKit makes the directories a COPY needs with an octal --chmod's mode, else 0755
                os.mkdir(host)
                octal = None if plain or self.chmod is None else self.chmod.octal
                os.chmod(host, 0o755 if octal is None else octal)
                self._chown(host, self.owner or (0, 0))

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

    @property
    def _may_chown(self) -> bool:
        return os.geteuid() == 0
