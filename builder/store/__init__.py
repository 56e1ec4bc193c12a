"""The content-addressed image store under $PYBUILD_ROOT (layout and contract: docs/store.md).

    blobs/sha256/<hex>        every blob (layers, configs, manifests), named by its sha256   blobs.py
    layers/<diff_id hex>.json a LayerRecord: which blob holds the layer with that diff_id     layers.py
    images.json               {"images": {image id: {manifest, added}}, "tags": {name: image id}}  images.py
    registry.json             repo digests of pulls and pushes, registry repositories per blob  images.py
    snapshots/<chain hex>/    one layer unpacked in overlay form (lowerdir of containers)      snapshots.py
    cache/keys/*/*.json       build cache entries (the builder's); a GC root when prune is given them
    containers/<id>/*.json    container state (the runtime's); every digest in them is a GC root  gc.py
    tmp/                      in-flight writes; renamed into place when complete
    lock                      flock: shared while writing, exclusive while pruning             root.py

Writes go to tmp/, are hashed as they stream, fsync'd and renamed into place; a blob whose
hash does not match is never stored. images.json is replaced atomically under `images.lock`.
`Store` is the one object callers use; each part lives in its own module.
"""

from __future__ import annotations

import os
from typing import Sequence

from builder.oci.reference import normalize_tag
from builder.store.gc import GCRoots, PruneReport, prune
from builder.store.images import ImageRecord, ImageStore
from builder.store.layers import LayerRecord
from builder.store.root import StoreRoot
from builder.store.snapshots import SnapshotStore
from builder.util.paths import default_root

__all__ = ["Store", "LayerRecord", "ImageRecord", "PruneReport", "GCRoots", "default_root", "normalize_tag"]


class Store(ImageStore, SnapshotStore):
    """A content-addressed image store rooted at one directory (see the module docstring)."""

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> "Store":
        """Open (creating if needed) the store at `root` (default: `default_root()`)."""
        return cls(StoreRoot.create(root))

    def prune(self, wait: bool = True, roots: Sequence[GCRoots] = ()) -> PruneReport:
        """Remove images no tag, container or `roots` references, unreferenced blobs, snapshots and
        temp files (`roots`: e.g. the build cache's, `builder.cache.policy.build_cache_roots`).

        Takes the store lock exclusively, so it waits for (and never races) writers holding a lease.
        """
        return prune(self, roots, wait)
