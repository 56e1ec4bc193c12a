"""`Store`: the one object callers use, combining the store's parts (see the package docstring)."""

from __future__ import annotations

import os
from typing import Sequence

from builder.store.gc import GCRoots, PruneReport, prune
from builder.store.images import ImageStore
from builder.store.root import StoreRoot
from builder.store.snapshots import SnapshotStore

__all__ = ["Store"]


class Store(ImageStore, SnapshotStore):
    """A content-addressed image store rooted at one directory (see the module docstring)."""

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> "Store":
        """Open (creating if needed) the store at `root` (default: `default_root()`)."""
        return cls(StoreRoot.create(root))

    def prune(self, wait: bool = True, roots: Sequence[GCRoots] = (), *, keep_images: bool = False,
              dry_run: bool = False) -> PruneReport:
        """Remove images no tag, container or `roots` references, unreferenced blobs, snapshots and
        temp files (`roots`: e.g. the build cache's, `builder.cache.policy.build_cache_roots`);
        `keep_images` keeps every image, `dry_run` only reports.

        Takes the store lock exclusively, so it waits for (and never races) writers holding a lease.
        """
        return prune(self, roots, wait, keep_images=keep_images, dry_run=dry_run)
