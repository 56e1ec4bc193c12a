"""Snapshots: each layer of a chain unpacked once, in overlay form, under `snapshots/<chain hex>/`."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from builder.errors import DigestMismatchError, StoreError
from builder.oci import compress
from builder.oci.image import Image, Layer
from builder.oci.layer.unpack import extract
from builder.oci.model import chain_ids
from builder.store.layers import LayerStore, size_limit
from builder.util.prefetch import CHUNK, Prefetch

__all__ = ["SnapshotStore"]


class SnapshotStore(LayerStore):
    """Unpacked layers of a store (the lowerdirs of containers and build steps)."""

    def snapshot(self, layers: Sequence[Layer | str]) -> Path:
        """Unpack a layer chain (Layers, or diff_ids of stored layers), each layer once, in overlay form.

        Returns the top layer's snapshot directory. Each `snapshots/<chain id hex>/` holds only that
        layer's changes (whiteouts as 0/0 char devices, `trusted.overlay.opaque=y` dirs), so a
        rootfs is an overlay of `snapshot_dirs(...)` (lowest first). Made atomically, shared.
        """
        dirs = self.snapshot_dirs(layers)
        if not dirs:
            raise StoreError("an empty layer chain has no snapshot")
        return dirs[-1]

    def snapshot_dirs(self, layers: Sequence[Layer | str],
                      on_bytes: Callable[[int], object] | None = None) -> list[Path]:
        """Snapshot directories of a layer chain, lowest first (creating missing ones);
        `on_bytes(n)` is told of the layer tar bytes unpacked (progress bars)."""
        dirs: list[Path] = []
        for layer, chain in zip(layers, chain_ids(l if isinstance(l, str) else str(l.diff_id) for l in layers)):
            path = self.snapshot_path(chain)
            if not path.is_dir():  # a stored layer's record is read only to unpack it (a RUN step's chain: once)
                self._unpack_snapshot(self.layer(layer) if isinstance(layer, str) else layer, path,
                                      list(reversed(dirs)), on_bytes)
            dirs.append(path)
        return dirs

    def rootfs_dirs(self, image: Image) -> list[Path]:
        """The snapshot directories of an image's layers, lowest first (for overlay lowerdir)."""
        return self.snapshot_dirs(list(image.layers()))

    def _unpack_snapshot(self, layer: Layer, path: Path, lowers: list[Path],
                         on_bytes: Callable[[int], object] | None = None) -> None:
        with self.lease():
            tmp = Path(tempfile.mkdtemp(prefix=f"snap-{os.getpid()}-", dir=self.root / "tmp"))
            try:
                os.chmod(tmp, 0o755)
                self.unpack_layer(layer, tmp, overlay=True, lowers=lowers, on_bytes=on_bytes)
                try:
                    os.rename(tmp, path)
                except OSError:
                    if not path.is_dir():
                        raise
                    shutil.rmtree(tmp)  # another process made it first
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def unpack_layer(self, layer: Layer, dest: Path, *, overlay: bool = False, lowers: Sequence[Path] = (),
                     limit: int | None = None, on_bytes: Callable[[int], object] | None = None) -> None:
        """Extract one layer into `dest` (confined to it), checking its diff_id on the way;
        `on_bytes(n)` is told of every `n` bytes of layer tar read."""
        h = hashlib.sha256()
        if self.has_blob(layer.digest):  # the diff_id check below covers the blob: no second hash
            opened = compress.decompressing_reader(open(self.blob_path(layer.digest), "rb"),
                                                   compress.codec_of(layer.media_type), size_limit(limit))
        else:
            opened = layer.open_uncompressed(size_limit(limit))
        with opened as raw:
            def counted(data: bytes) -> None:
                h.update(data)
                if on_bytes is not None:
                    on_bytes(len(data))

            reader = Prefetch(raw, counted)
            try:
                extract(reader, dest, overlay=overlay, lowers=lowers)  # type: ignore[arg-type]
                while reader.read(CHUNK):
                    pass
            finally:
                reader.close()
        if "sha256:" + h.hexdigest() != layer.diff_id:
            raise DigestMismatchError(f"layer {layer.digest} unpacks to sha256:{h.hexdigest()}, "
                                      f"not its diff_id {layer.diff_id}")
