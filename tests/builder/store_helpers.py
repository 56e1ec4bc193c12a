"""Helpers to get images into a store for tests (reusable by every test directory).

    from tests.builder.store_helpers import import_busybox
    image_id = import_busybox(store_root, busybox_tar)       # busybox:latest in that store
    image, rec = built_image(store, tmp_path / "upper")     # busybox + one random file, as a build makes it
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from builder.oci import mutate
from builder.oci.image import EMPTY, Image
from builder.oci.model import ContainerConfig, History
from builder.store import LayerRecord, Store


def import_busybox(root: Path, busybox_tar: Path, tag: str = "busybox:latest") -> str:
    """Import the busybox rootfs tar into the store at `root` as `tag` (reproducible: created=0)."""
    store = Store.open(root)
    with store.lease(), open(busybox_tar, "rb") as f:
        record = store.commit_tar(f, epoch=0)
        image = mutate.append_layers(EMPTY, store.blob_layer(record),
                                     history=[History(created_by="pybuild import busybox.tar")])
        image = mutate.with_config(image, ContainerConfig(cmd=("sh",), env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)))
        image = mutate.with_created(image, 0)
        return store.put_image(image, [tag])


def clone_store(src: Path, dst: Path) -> Path:
    """A copy of a store (without snapshots or temp files), into `dst` (which may exist)."""
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns("snapshots", "tmp"))
    for sub in ("snapshots", "tmp"):
        os.makedirs(dst / sub, exist_ok=True)
    return dst


def built_image(store: Store, upper: Path, size: int = 1000) -> tuple[Image, LayerRecord]:
    """busybox plus one layer of a random file, kept uncompressed as a build keeps its layers
    (not stored under a name: the caller tags it)."""
    upper.mkdir()
    (upper / "f").write_bytes(os.urandom(size))
    rec = store.commit_dir(upper, compression="uncompressed", epoch=0)
    return mutate.append_layers(store.resolve("busybox"), store.blob_layer(rec), history=[History(created_by="x")]), rec
