"""Layers: `layers/<diff_id hex>.json` records, layer commits (directory, tar, compressed blob)
through a hashing and compressing pipeline, and compressed copies of uncompressed layers."""

from __future__ import annotations

import functools
import contextlib
import hashlib
import json
import os
import queue
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from builder.errors import DigestMismatchError, StoreError
from builder.oci import compress
from builder.oci.image import BasicImage, BlobLayer, Image, Layer
from builder.oci.layer.write import rewrite_tar, write_dir
from builder.oci.model import Descriptor, Digest, chain_ids
from builder.store.blobs import CHUNK, BlobStore, BlobWriter
from builder.util.sparse import hole_reader
from builder.util.streams import Prefixed, Tee

__all__ = ["LayerRecord", "LayerStore", "size_limit"]


def size_limit(limit: int | None) -> int | None:
    """`limit`, or the configured maximum layer size when None."""
    return limit if limit is not None else compress.max_layer_size()


@dataclass(frozen=True)
class LayerRecord:
    """A stored layer: its diff_id (uncompressed tar), blob digest, blob size and media type."""

    diff_id: Digest
    digest: Digest
    size: int
    media_type: str
    uncompressed_size: int = 0

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LayerRecord":
        return cls(Digest(d["diff_id"]), Digest(d["digest"]), int(d["size"]), d["media_type"],
                   int(d.get("uncompressed_size", 0)))


class _Pipeline:
    """tar bytes (main thread) -> [worker] sha256 = diff_id -> compressor -> blob writer.

    The worker thread overlaps hashing and compression with reading files; the queue is
    bounded, so memory does not grow with the layer.
    """

    def __init__(self, blob: BlobWriter, codec: str, level: int | None) -> None:
        self._blob = blob
        self._diff = hashlib.sha256()
        self.tar_size = 0
        self._comp = compress.compressor(codec, blob.write, level)
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="layer-pipeline", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            while (chunk := self._q.get()) is not None:
                self._diff.update(chunk)
                self._comp.write(chunk)
            self._comp.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc
            while self._q.get() is not None:
                pass

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self.tar_size += len(data)
        self._q.put(data)

    def close(self) -> Digest:
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return Digest("sha256:" + self._diff.hexdigest())

    def abort(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()


class LayerStore(BlobStore):
    """The layers of a store, by diff_id: committing, recording and compressing them."""

    def _record_path(self, diff_id: str) -> Path:
        return self.root / "layers" / f"{Digest(diff_id).hex}.json"

    def _record_layer(self, rec: LayerRecord) -> LayerRecord:
        self._write_json_atomic(self._record_path(rec.diff_id), asdict(rec))
        return rec

    def has_layer_record(self, diff_id: str) -> bool:
        """Whether a record for this diff_id exists (its blob may still be missing)."""
        return self._record_path(diff_id).exists()

    def _finish_layer(self, blob: BlobWriter, pipe: _Pipeline, codec: str,
                      expected_diff_id: str | None = None, record: Path | None = None) -> LayerRecord:
        diff_id = pipe.close()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise DigestMismatchError(f"layer tar hashes to {diff_id}, not the expected diff_id {expected_diff_id}; "
                                      "nothing stored")
        digest = blob.commit(known=diff_id if codec == compress.NONE else None)  # the blob is the tar
        rec = LayerRecord(diff_id, digest, blob.size, compress.media_type_for(codec), pipe.tar_size)
        self._write_json_atomic(record or self._record_path(rec.diff_id), asdict(rec))
        return rec

    def _commit(self, produce: Callable[[Callable[[bytes], object]], None], compression: str,
                level: int | None, expected_diff_id: str | None = None, record: Path | None = None) -> LayerRecord:
        compress.media_type_for(compression)  # validates the codec name early
        with self.lease():
            blob = BlobWriter(self, hashed=compression != compress.NONE)
            pipe = _Pipeline(blob, compression, level)
            try:
                produce(pipe.write)
                return self._finish_layer(blob, pipe, compression, expected_diff_id, record)
            except BaseException:
                pipe.abort()
                blob.abort()
                raise

    def compressed_layer(self, layer: Layer | LayerRecord, codec: str = compress.GZIP,
                         level: int | None = None, force: bool = False) -> LayerRecord:
        """The layer as a compressed blob: itself if already compressed, else a `codec` copy of its
        stored uncompressed blob, made once and remembered in `layers/<diff_id hex>.<codec><level>.json`.

        Builds keep their layers uncompressed (as buildah does); pushes and exports compress them
        here. The copy streams (bounded memory), is deterministic, and is checked against the
        diff_id before it is stored. `force` (buildx's `force-compression=true`) also converts a
        layer stored with another codec (a gzip base image to zstd, or to uncompressed).
        """
        compress.media_type_for(codec)  # an unknown codec is an ImageFormatError
        have = compress.codec_of(layer.media_type)
        if have == codec or (not force and (codec == compress.NONE or have != compress.NONE)):
            return layer if isinstance(layer, LayerRecord) else \
                LayerRecord(layer.diff_id, layer.digest, layer.size, layer.media_type)
        level = compress.DEFAULT_LEVEL[codec] if level is None else level
        alt = self.root / "layers" / f"{Digest(layer.diff_id).hex}.{codec}{level}.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            rec = LayerRecord.from_dict(json.loads(alt.read_text()))
            if self.has_blob(rec.digest):
                return rec

        def produce(sink: Callable[[bytes], object]) -> None:
            with self.open_blob(layer.digest, verify=False) as raw:  # the diff_id check below covers it
                read = hole_reader(raw.fileno()) if have == compress.NONE else \
                    compress.decompressing_reader(raw, have, None).read  # (holes: not read, zeros served)
                while data := read(CHUNK):
                    sink(data)

        return self._commit(produce, codec, level, layer.diff_id, record=alt)

    def compressed_image(self, image: Image, codec: str = compress.GZIP, level: int | None = None,
                         force: bool = False) -> Image:
        """`image` with its uncompressed layers replaced by compressed copies (`compressed_layer`;
        with `force`, every layer not already in `codec`).

        The config, and so the image id, stays the same; the manifest digest changes (a built
        image's local digest differs from its pushed one, as with buildah). An image with nothing
        to convert is returned as it is, its manifest bytes untouched.
        """
        compress.media_type_for(codec)
        layers = image.layers()
        have = [compress.codec_of(l.media_type) for l in layers]
        if all(h == codec or (not force and (codec == compress.NONE or h != compress.NONE)) for h in have):
            return image
        with self.lease():
            recs = [self.compressed_layer(l, codec, level, force) for l in layers]
        new = tuple(self.blob_layer(r) if r.digest != l.digest else l for r, l in zip(recs, layers))
        manifest = image.manifest()
        return BasicImage(image.raw_config(), new, manifest.media_type, manifest.annotations)

    def commit_dir(self, upperdir: str | os.PathLike[str], compression: str = compress.GZIP,
                   level: int | None = None, epoch: int | None = None,
                   warn: Callable[[str], None] | None = None,
                   snapshot_parent: Sequence[str] | None = None,
                   on_bytes: Callable[[int], object] | None = None) -> LayerRecord:
        """Commit a directory diff (an overlayfs upperdir) as a deterministic layer, in one pass.

        `epoch` (SOURCE_DATE_EPOCH) clamps mtimes; overlay whiteouts become OCI whiteouts.
        With `snapshot_parent` (the diff_ids of the layers below, [] for none), the upperdir
        (already in overlay form, on the store's filesystem: see `tmp_dir()`) is then moved
        into place as this layer's snapshot unless one exists; do not use it afterwards.
        `on_bytes(n)` is told of every `n` bytes of layer tar written (progress bars).
        """
        kw = {"warn": warn} if warn else {}

        def produce(sink: Callable[[bytes], object]) -> None:
            counted = sink if on_bytes is None else (lambda data: (on_bytes(len(data)), sink(data)))
            write_dir(upperdir, counted, epoch=epoch, **kw)

        with self.lease():
            rec = self._commit(produce, compression, level)
            if snapshot_parent is not None:
                path = self.snapshot_path(chain_ids([*snapshot_parent, rec.diff_id])[-1])
                if not path.exists():
                    with contextlib.suppress(OSError):
                        os.rename(upperdir, path)
                        os.chmod(path, 0o755)
        return rec

    def commit_tar(self, stream: IO[bytes], compression: str = compress.GZIP, level: int | None = None,
                   epoch: int | None = None, limit: int | None = None) -> LayerRecord:
        """Commit an existing tar (plain, gzip or zstd) as a layer, re-serialized canonically.

        Names are checked (nothing may point outside the root); `limit` caps the uncompressed size.
        """
        head = stream.read(4)
        rest = Prefixed(head, stream)
        raw = compress.decompressing_reader(rest, compress.detect(head), size_limit(limit))  # type: ignore[arg-type]
        return self._commit(lambda sink: rewrite_tar(raw, sink, epoch=epoch), compression, level)

    def put_tar(self, stream: IO[bytes], compression: str = compress.GZIP, level: int | None = None,
                diff_id: Digest | None = None, limit: int | None = None) -> LayerRecord:
        """Store a layer tar byte for byte (compressing it), e.g. from a docker-archive.

        The input may be plain, gzip or zstd; its uncompressed bytes must hash to `diff_id` if given.
        """
        head = stream.read(4)
        raw = compress.decompressing_reader(Prefixed(head, stream), compress.detect(head), size_limit(limit))  # type: ignore[arg-type]

        def produce(sink: Callable[[bytes], object]) -> None:
            while data := raw.read(CHUNK):
                sink(data)

        return self._commit(produce, compression, level, diff_id)

    def put_layer(self, stream: IO[bytes], media_type: str, digest: Digest | None = None,
                  diff_id: Digest | None = None, limit: int | None = None) -> LayerRecord:
        """Store a compressed layer blob as is (pulled or loaded), checking digest and diff_id."""
        codec = compress.codec_of(media_type)
        with self.lease():
            blob = BlobWriter(self)
            try:
                reader = compress.decompressing_reader(Tee(stream, blob.write), codec, size_limit(limit))  # type: ignore[arg-type]
                h = hashlib.sha256()
                size = 0
                while data := reader.read(CHUNK):
                    h.update(data)
                    size += len(data)
                while stream.read(CHUNK):  # trailing bytes after the compressed stream belong to the blob
                    pass
                got = Digest("sha256:" + h.hexdigest())
                if diff_id is not None and Digest(diff_id) != got:
                    raise DigestMismatchError(f"layer {digest or ''} unpacks to {got}, not the diff_id {diff_id}")
                blob_digest = blob.commit(digest)
            except BaseException:
                blob.abort()
                raise
            return self._record_layer(LayerRecord(got, blob_digest, blob.size, media_type, size))

    def layer_record(self, diff_id: str) -> LayerRecord:
        """The stored layer with this diff_id."""
        try:
            d = json.loads(self._record_path(diff_id).read_text())
        except FileNotFoundError:
            raise StoreError(f"layer {diff_id} is not in the store") from None
        return LayerRecord(Digest(d["diff_id"]), Digest(d["digest"]), d["size"], d["media_type"],
                           d.get("uncompressed_size", 0))

    def layer(self, ref: LayerRecord | dict | str) -> BlobLayer:
        """A `Layer` view of a stored layer, from a LayerRecord, its dict form, or a diff_id."""
        if isinstance(ref, str):
            rec = self.layer_record(ref)
        elif isinstance(ref, dict):
            rec = LayerRecord.from_dict(ref)
        else:
            rec = ref
        if not self.has_blob(rec.digest):
            raise StoreError(f"layer blob {rec.digest} is not in the store")
        return BlobLayer(rec.diff_id, rec.digest, rec.size, rec.media_type, functools.partial(self.open_blob, rec.digest),
                         rec.uncompressed_size)

    def blob_layer(self, rec: LayerRecord) -> BlobLayer:
        """Same as `layer(rec)`."""
        return self.layer(rec)

    def measured_size(self, diff_id: str) -> int:
        """The tar size of a stored layer, measured once (one decompressing pass) and recorded when
        the record lacks it (a pulled or loaded layer): `docker images` shows this, whatever the
        layer's compression."""
        from dataclasses import replace

        rec = self.layer_record(diff_id)
        if rec.uncompressed_size:
            return rec.uncompressed_size
        n = 0
        with self.layer(rec).open_uncompressed() as f:
            while data := f.read(1 << 20):
                n += len(data)
        self._record_layer(replace(rec, uncompressed_size=n))
        return n

    def uncompressed_size(self, diff_id: str) -> int:
        """The recorded tar size of a stored layer, 0 when unknown."""
        try:
            return self.layer_record(diff_id).uncompressed_size
        except (StoreError, OSError, ValueError):
            return 0
