"""The stat cache: a file's sha256 remembered by its stat, so an unchanged file is never read twice.

    StatCache.for_root(view) -> StatCache   the cache of one root (a build context, a stage's rootfs):
                                            one compact file under `$PYBUILD_ROOT/cache/statcache/`
    StatCache(path)                         the cache kept in `path` (None: in memory only)
      .digest(key, lstat) -> bytes | None   the sha256 of file `key` (relative to the root) if cached
                                            for exactly that (inode, size, mtime_ns, ctime_ns)
      .store(key, lstat, digest)            remember it, unless the file changed within a second of
                                            the scan (racily clean, as git does)
      .remember(key, lstat, digest)         remember it anyway (a root nobody changes once written)
      .seen                                 a set to fill during a walk of the whole root: `save`
                                            then forgets files that are gone
      .frozen                               set for a root nobody changes (`pybuild serve`'s contexts):
                                            ctime is not compared (hard-linking a file into a
                                            layer changes it, not the content)
      .save()                               write it back (atomically, not fsync'd: a lost or torn
                                            file is only a miss), when something changed
"""

from __future__ import annotations

import marshal
import os
import time
from pathlib import Path

from builder.errors import StoreError
from builder.util.paths import default_root
from builder.util.sha import sha256

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import Protocol, Sequence

    class _Layered(Protocol):
        """A root made of layer directories, top-most first (a `build.fsview.RootView`)."""

        @property
        def layers(self) -> Sequence[Path]: ...

__all__ = ["StatCache"]

_STATCACHE_VERSION = 1  # bump when an entry's layout changes: old files are then ignored
_RACY_NS = 1_000_000_000  # entries changed this close to a scan are hashed again next time


class StatCache:
    """(inode, size, mtime_ns, ctime_ns) -> sha256 of a file, per root, kept between runs."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, tuple[int, int, int, int, bytes]] = {}
        self.dirty = False
        self.seen: set[str] | None = None  # set by a walk of the whole root: the rest is stale
        self.frozen = False  # nobody changes the root's files: ctime (links) is not compared
        self.started_ns = time.time_ns()
        if path is not None:
            try:
                version, entries = marshal.loads(path.read_bytes())
                if version == _STATCACHE_VERSION and isinstance(entries, dict):
                    self.entries = entries
            except (OSError, ValueError, EOFError, TypeError):
                pass  # missing, corrupt or from another version: start empty

    @classmethod
    def for_root(cls, view: _Layered) -> "StatCache":
        """The persistent cache of the root `view` (keyed by its layer directories' real paths)."""
        key = sha256("\0".join(str(p.resolve()) for p in view.layers).encode()).hexdigest()[:32]
        return cls(default_root() / "cache" / "statcache" / key)

    def digest(self, key: str, st: os.stat_result) -> bytes | None:
        """The sha256 of the file `key` (a path relative to the root) if cached for exactly `st`."""
        hit = self.entries.get(key)
        if hit is not None and hit[2] == st.st_mtime_ns and (hit[3] == st.st_ctime_ns or self.frozen) \
                and hit[0] == st.st_ino and hit[1] == st.st_size:
            return hit[4]
        return None

    def store(self, key: str, st: os.stat_result, digest: bytes) -> None:
        """Remember the sha256 of file `key` for `st` (not when it changed just before the scan)."""
        if max(st.st_mtime_ns, st.st_ctime_ns) >= self.started_ns - _RACY_NS:
            return  # racily clean: it may change again within the timestamp granularity
        self.entries[key] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
        self.dirty = True

    def remember(self, key: str, st: os.stat_result, digest: bytes) -> None:
        """`store` without the racy-clean check: for a root that its writer hands over complete and
        nobody changes afterwards (`pybuild serve`'s unpacked contexts, hashed as they arrived)."""
        self.entries[key] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
        self.dirty = True

    def save(self) -> None:
        """Write the cache atomically (not durably: it is rebuildable); a no-op when nothing changed."""
        if self.seen is not None and len(self.entries) > len(self.seen):
            self.entries = {k: v for k, v in self.entries.items() if k in self.seen}
            self.dirty = True
        if self.path is None or not self.dirty:
            return
        from builder.util.atomic import write_atomic  # only when there is something to write

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, marshal.dumps((_STATCACHE_VERSION, self.entries)), mode=0o600, durable=False)
            self.dirty = False
        except (OSError, StoreError):
            pass  # a cache that cannot be written only costs time
