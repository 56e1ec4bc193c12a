"""The content-addressed image store under $PYBUILD_ROOT (layout and contract: docs/store.md).

    blobs/sha256/<hex>        every blob (layers, configs, manifests), named by its sha256   blobs.py
    layers/<diff_id hex>.json a LayerRecord: which blob holds the layer with that diff_id     layers.py
    images.json               {"images": {image id: {manifest, added}}, "tags": {name: image id}}  images.py, lookup.py
    registry.json             repo digests of pulls and pushes, registry repositories per blob  images.py
    snapshots/<chain hex>/    one layer unpacked in overlay form (lowerdir of containers)      snapshots.py
    cache/keys/*/*.json       build cache entries (the builder's); a GC root when prune is given them
    containers/<id>/*.json    container state (the runtime's); every digest in them is a GC root  gc.py
    tmp/                      in-flight writes; renamed into place when complete
    lock                      flock: shared while writing, exclusive while pruning             root.py

Writes go to tmp/, are hashed as they stream, fsync'd and renamed into place; a blob whose
hash does not match is never stored. images.json is replaced atomically under `images.lock`.
`Store` (facade.py) is the one object callers use; each part lives in its own module. This package
imports its parts lazily: `pybuild run` reads a tagged, unpacked image through `lookup` alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.store.facade import Store
    from builder.store.gc import GCRoots, PruneReport
    from builder.store.images import ImageRecord
    from builder.store.layers import LayerRecord

__all__ = ["Store", "LayerRecord", "ImageRecord", "PruneReport", "GCRoots"]

_WHERE = {"Store": "builder.store.facade", "LayerRecord": "builder.store.layers", "ImageRecord": "builder.store.images",
          "PruneReport": "builder.store.gc", "GCRoots": "builder.store.gc"}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'builder.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
