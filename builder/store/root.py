"""`StoreRoot`: the store's directory, its lease lock, and the metadata write every part uses."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Iterator

from builder.errors import StoreError
from builder.oci.model import Digest
from builder.store.lookup import snapshot_dir
from builder.util.atomic import write_atomic
from builder.util.paths import default_root
from builder.util.pids import alive

__all__ = ["StoreRoot", "SUBDIRS"]

SUBDIRS = ("blobs/sha256", "layers", "snapshots", "cache", "containers", "tmp")


def _owner(name: str) -> int:
    """The pid in a temp entry's name (`step-<pid>-...`, `blob-<pid>-...`), 0 when none."""
    parts = name.lstrip(".").split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isascii() and parts[1].isdigit() else 0


def sweep_tmp(root: Path) -> int:
    """Remove what killed pybuild processes left in `root/tmp` (a SIGKILLed build's step dirs,
    half-written blobs and snapshots): entries whose owner pid, in their name, is gone. Returns
    how many were removed."""
    try:
        names = os.listdir(root / "tmp")
    except OSError:
        return 0
    removed = 0
    for name in names:
        pid = _owner(name)
        if pid and pid != os.getpid() and not alive(pid):
            path = root / "tmp" / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


class StoreRoot:
    """The root directory of a store and its locks (the layout is in builder/store/__init__.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lease_depth = 0
        self._lease_fd = -1
        self._lease_lock = threading.Lock()

    @classmethod
    def create(cls, root: str | os.PathLike[str] | None = None) -> Path:
        """Make the store's directories at `root` (default: `default_root()`); returns the path."""
        path = Path(root) if root is not None else default_root()
        try:
            if not path.is_dir():  # private: other users read no image, build record or credential
                path.mkdir(mode=0o700, parents=True)
                os.chmod(path, 0o700)
            for sub in SUBDIRS:
                (path / sub).mkdir(parents=True, exist_ok=True)
            (path / "lock").touch(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the image store at {path}: {exc.strerror}",
                             hint="set PYBUILD_ROOT or --root to a writable directory") from None
        sweep_tmp(path)
        return path

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold a shared lock: `prune` waits until no lease is held (re-entrant, thread-safe).

        Hold one across a multi-step write (a whole build) so that nothing written but not yet
        referenced by a tag or cache entry can be collected in between.
        """
        with self._lease_lock:
            if self._lease_depth == 0:
                fd = os.open(self.root / "lock", os.O_RDWR | os.O_CLOEXEC)
                fcntl.flock(fd, fcntl.LOCK_SH)
                self._lease_fd = fd
            self._lease_depth += 1
        try:
            yield
        finally:
            with self._lease_lock:
                self._lease_depth -= 1
                if self._lease_depth == 0:
                    os.close(self._lease_fd)
                    self._lease_fd = -1

    @property
    def leased(self) -> bool:
        """Whether this process holds a lease."""
        return self._lease_depth > 0

    def tmp_dir(self) -> Path:
        """A directory for scratch work on the store's filesystem (renames into the store work)."""
        return self.root / "tmp"

    def snapshot_path(self, chain_id: str) -> Path:
        """Where the snapshot of the layer chain `chain_id` lives (whether or not it exists)."""
        return snapshot_dir(self.root, Digest(chain_id))

    def _write_json_atomic(self, path: Path, obj: object) -> None:
        """Store metadata: replaced atomically and durably (temp file in tmp/, mode 0600 as always)."""
        write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode(), mode=0o600,
                     tmp_dir=self.root / "tmp")
