"""The content-addressed image store under $PYBUILD_ROOT (layout and contract: docs/store.md).

    blobs/sha256/<hex>        every blob (layers, configs, manifests), named by its sha256
    layers/<diff_id hex>.json a LayerRecord: which blob holds the layer with that diff_id
    images.json               {"images": {image id: {manifest, added}}, "tags": {name: image id}}
    snapshots/<chain hex>/    one layer unpacked in overlay form (lowerdir of containers)
    cache/keys/*/*.json       build cache entries (the builder's); every digest in them is a GC root
    containers/<id>/*.json    container state (the runtime's); every digest in them is a GC root
    tmp/                      in-flight writes; renamed into place when complete
    lock                      flock: shared while writing, exclusive while pruning

Writes go to tmp/, are hashed as they stream, fsync'd and renamed into place; a blob whose
hash does not match is never stored. images.json is replaced atomically under `images.lock`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from builder.errors import DigestMismatchError, ImageFormatError, InvalidReferenceError, StoreError
from builder.oci import compress
from builder.oci.image import BasicImage, BlobLayer, Image, Layer, validate_image
from builder.oci.layer.unpack import extract
from builder.oci.layer.write import rewrite_tar, write_dir
from builder.oci.model import Descriptor, Digest, ImageConfig, Manifest, chain_ids
from builder.util.paths import default_root
from builder.util.streams import Prefixed

__all__ = ["Store", "LayerRecord", "ImageRecord", "PruneReport", "default_root", "normalize_tag"]

CHUNK = 1 << 20
_DIGEST_TEXT = re.compile(rb"sha256:[0-9a-f]{64}")
_NAME = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                   r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def _limit(limit: int | None) -> int | None:
    return limit if limit is not None else compress.max_layer_size()


def normalize_tag(name: str) -> str:
    """`busybox` -> `busybox:latest`; checks the name and tag; drops a `docker.io/library/` prefix."""
    if "@" in name:
        raise InvalidReferenceError(f"invalid image name {name!r}: a tag cannot contain a digest")
    repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    if not _NAME.match(repo) or not _TAG.match(tag):
        raise InvalidReferenceError(f"invalid image name {name!r}",
                                    hint="use NAME[:TAG] with a lowercase name, e.g. myapp:1.0")
    return f"{repo}:{tag}"


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


@dataclass(frozen=True)
class ImageRecord:
    """An image in the store, as `pybuild images` lists it."""

    id: Digest
    manifest: Digest
    tags: tuple[str, ...]
    added: str


@dataclass
class PruneReport:
    images: list[str] = field(default_factory=list)
    blobs: int = 0
    snapshots: int = 0
    temp: int = 0
    bytes_freed: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_WRITEBACK = 8 << 20


def _load_sync_file_range() -> Callable[[int, int, int], None]:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    except (OSError, AttributeError):
        return lambda fd, off, n: None
    return lambda fd, off, n: fn(fd, off, n, 2)  # SYNC_FILE_RANGE_WRITE: asynchronous


_start_writeback = _load_sync_file_range()


class _BlobWriter:
    """A blob being written into tmp/: hashed as it streams, renamed into place by `commit()`.

    `hashed=False` when the caller hashes the very same bytes itself (an uncompressed layer's
    blob digest is its diff_id) and passes that digest to `commit(known=...)`.
    """

    def __init__(self, store: "Store", hashed: bool = True) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.root / "tmp")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256() if hashed else None
        self.size = 0
        self._flushed = 0

    def write(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self._file.write(data)
        self.size += len(data)
        if self.size - self._flushed >= _WRITEBACK:  # start writeback early, so the final fsync is short
            _start_writeback(self._file.fileno(), self._flushed, self.size - self._flushed)
            self._flushed = self.size

    @property
    def digest(self) -> Digest:
        assert self._hash is not None
        return Digest("sha256:" + self._hash.hexdigest())

    def commit(self, expected: Digest | None = None, known: Digest | None = None) -> Digest:
        digest = known if known is not None else self.digest
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if expected is not None and Digest(expected) != digest:
            self.path.unlink(missing_ok=True)
            raise DigestMismatchError(f"content hashes to {digest}, not the expected {expected}; nothing stored")
        final = self._store.blob_path(digest)
        if final.exists():
            self.path.unlink()
        else:
            os.replace(self.path, final)
            _fsync_dir(final.parent)
        return digest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class _Pipeline:
    """tar bytes (main thread) -> [worker] sha256 = diff_id -> compressor -> blob writer.

    The worker thread overlaps hashing and compression with reading files; the queue is
    bounded, so memory does not grow with the layer.
    """

    def __init__(self, blob: _BlobWriter, codec: str, level: int | None) -> None:
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


class _Tee:
    """A reader that passes what it reads to `sink` too."""

    def __init__(self, raw: IO[bytes], sink: Callable[[bytes], object]) -> None:
        self._raw, self._sink = raw, sink

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._sink(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _Prefetch:
    """Reads `raw` ahead in a thread, passing each chunk to `on_chunk` (decompressing and hashing
    release the GIL, so they overlap with the caller's work); bounded, so memory stays flat."""

    def __init__(self, raw: IO[bytes], on_chunk: Callable[[bytes], object]) -> None:
        self._raw, self._on_chunk = raw, on_chunk
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._buf, self._pos, self._eof = b"", 0, False
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="layer-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop and (data := self._raw.read(CHUNK)):
                self._on_chunk(data)
                self._q.put(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reader's thread
            self._error = exc
        finally:
            self._q.put(None)

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._buf):
            if self._eof:
                return b""
            item = self._q.get()
            if item is None:
                self._eof = True
                if self._error is not None:
                    raise self._error
                return b""
            self._buf, self._pos = item, 0
        if n < 0 or (self._pos == 0 and n >= len(self._buf)):
            data, self._buf, self._pos = self._buf[self._pos:] if self._pos else self._buf, b"", 0
            return data
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stop = True
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


class _VerifyingReader:
    """Reads a blob and raises DigestMismatchError at the end if it does not hash right."""

    def __init__(self, f: IO[bytes], digest: Digest) -> None:
        self._f, self._digest, self._hash, self._done = f, digest, hashlib.sha256(), False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hash.update(data)
        if not data and not self._done and n != 0:
            self._done = True
            if "sha256:" + self._hash.hexdigest() != self._digest:
                raise DigestMismatchError(f"stored blob {self._digest} is corrupt",
                                          hint="remove it and pull or build the image again")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "_VerifyingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store:
    """A content-addressed image store rooted at one directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lease_depth = 0
        self._lease_fd = -1
        self._lease_lock = threading.Lock()

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> "Store":
        """Open (creating if needed) the store at `root` (default: `default_root()`)."""
        path = Path(root) if root is not None else default_root()
        try:
            for sub in ("blobs/sha256", "layers", "snapshots", "cache", "containers", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            (path / "lock").touch(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the image store at {path}: {exc.strerror}",
                             hint="set PYBUILD_ROOT or --root to a writable directory") from None
        return cls(path)

    # ------------------------------------------------------------------ locking

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

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        fd = os.open(self.root / "images.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def tmp_dir(self) -> Path:
        """A directory for scratch work on the store's filesystem (renames into the store work)."""
        return self.root / "tmp"

    # ------------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        d = Digest(digest)
        if d.algorithm != "sha256":
            raise StoreError(f"unsupported digest algorithm in {d}")
        return self.root / "blobs" / "sha256" / d.hex

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store a small blob (a config or manifest); returns its digest."""
        digest = Digest.of(data)
        if expected is not None and Digest(expected) != digest:
            raise DigestMismatchError(f"content hashes to {digest}, not the expected {expected}; nothing stored")
        if self.has_blob(digest):
            return digest
        with self.lease():
            w = _BlobWriter(self)
            try:
                w.write(data)
                return w.commit()
            except BaseException:
                w.abort()
                raise

    def put_stream(self, stream: IO[bytes], expected: Digest | None = None) -> tuple[Digest, int]:
        """Stream a blob into the store; with `expected`, a mismatch stores nothing."""
        with self.lease():
            w = _BlobWriter(self)
            try:
                while data := stream.read(CHUNK):
                    w.write(data)
                return w.commit(expected), w.size
            except BaseException:
                w.abort()
                raise

    def open_blob(self, digest: str, verify: bool = True) -> IO[bytes]:
        """A reader of a stored blob; with `verify`, a corrupt blob raises at the end of the read."""
        try:
            f = open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is not in the store") from None
        return _VerifyingReader(f, Digest(digest)) if verify else f  # type: ignore[return-value]

    def read_blob(self, digest: str) -> bytes:
        """A whole (small) blob, hash-checked."""
        with self.open_blob(digest) as f:
            data = f.read()
            f.read()
        if Digest.of(data) != digest:
            raise DigestMismatchError(f"stored blob {digest} is corrupt")
        return data

    # ------------------------------------------------------------------ layers

    def _record_layer(self, rec: LayerRecord) -> LayerRecord:
        path = self.root / "layers" / f"{rec.diff_id.hex}.json"
        self._write_json_atomic(path, asdict(rec))
        return rec

    def _finish_layer(self, blob: _BlobWriter, pipe: _Pipeline, codec: str,
                      expected_diff_id: str | None = None, record: Path | None = None) -> LayerRecord:
        diff_id = pipe.close()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise DigestMismatchError(f"layer tar hashes to {diff_id}, not the expected diff_id {expected_diff_id}; "
                                      "nothing stored")
        digest = blob.commit(known=diff_id if codec == compress.NONE else None)  # the blob is the tar
        rec = LayerRecord(diff_id, digest, blob.size, compress.media_type_for(codec), pipe.tar_size)
        self._write_json_atomic(record or self.root / "layers" / f"{rec.diff_id.hex}.json", asdict(rec))
        return rec

    def _commit(self, produce: Callable[[Callable[[bytes], object]], None], compression: str,
                level: int | None, expected_diff_id: str | None = None, record: Path | None = None) -> LayerRecord:
        compress.media_type_for(compression)  # validates the codec name early
        with self.lease():
            blob = _BlobWriter(self, hashed=compression != compress.NONE)
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
        with contextlib.suppress(OSError, ValueError, KeyError):
            d = json.loads(alt.read_text())
            rec = LayerRecord(Digest(d["diff_id"]), Digest(d["digest"]), d["size"], d["media_type"],
                              d.get("uncompressed_size", 0))
            if self.has_blob(rec.digest):
                return rec

        def produce(sink: Callable[[bytes], object]) -> None:
            with self.open_blob(layer.digest, verify=False) as raw:  # the diff_id check below covers it
                f = compress.decompressing_reader(raw, have, None)
                while data := f.read(CHUNK):
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
        raw = compress.decompressing_reader(rest, compress.detect(head), _limit(limit))  # type: ignore[arg-type]
        return self._commit(lambda sink: rewrite_tar(raw, sink, epoch=epoch), compression, level)

    def put_tar(self, stream: IO[bytes], compression: str = compress.GZIP, level: int | None = None,
                diff_id: Digest | None = None, limit: int | None = None) -> LayerRecord:
        """Store a layer tar byte for byte (compressing it), e.g. from a docker-archive.

        The input may be plain, gzip or zstd; its uncompressed bytes must hash to `diff_id` if given.
        """
        head = stream.read(4)
        raw = compress.decompressing_reader(Prefixed(head, stream), compress.detect(head), _limit(limit))  # type: ignore[arg-type]

        def produce(sink: Callable[[bytes], object]) -> None:
            while data := raw.read(CHUNK):
                sink(data)

        return self._commit(produce, compression, level, diff_id)

    def put_layer(self, stream: IO[bytes], media_type: str, digest: Digest | None = None,
                  diff_id: Digest | None = None, limit: int | None = None) -> LayerRecord:
        """Store a compressed layer blob as is (pulled or loaded), checking digest and diff_id."""
        codec = compress.codec_of(media_type)
        with self.lease():
            blob = _BlobWriter(self)
            try:
                reader = compress.decompressing_reader(_Tee(stream, blob.write), codec, _limit(limit))  # type: ignore[arg-type]
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
        path = self.root / "layers" / f"{Digest(diff_id).hex}.json"
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"layer {diff_id} is not in the store") from None
        return LayerRecord(Digest(d["diff_id"]), Digest(d["digest"]), d["size"], d["media_type"],
                           d.get("uncompressed_size", 0))

    def layer(self, ref: LayerRecord | dict | str) -> BlobLayer:
        """A `Layer` view of a stored layer, from a LayerRecord, its dict form, or a diff_id."""
        if isinstance(ref, str):
            rec = self.layer_record(ref)
        elif isinstance(ref, dict):
            rec = LayerRecord(Digest(ref["diff_id"]), Digest(ref["digest"]), int(ref["size"]), ref["media_type"],
                              int(ref.get("uncompressed_size", 0)))
        else:
            rec = ref
        if not self.has_blob(rec.digest):
            raise StoreError(f"layer blob {rec.digest} is not in the store")
        return BlobLayer(rec.diff_id, rec.digest, rec.size, rec.media_type, lambda d=rec.digest: self.open_blob(d),
                         rec.uncompressed_size)

    def blob_layer(self, rec: LayerRecord) -> BlobLayer:
        """Same as `layer(rec)`."""
        return self.layer(rec)

    # ------------------------------------------------------------------ images and tags

    def _read_index(self) -> dict:
        try:
            d = json.loads((self.root / "images.json").read_text())
        except FileNotFoundError:
            return {"images": {}, "tags": {}}
        except ValueError:
            raise StoreError(f"{self.root / 'images.json'} is corrupt") from None
        d.setdefault("images", {})
        d.setdefault("tags", {})
        return d

    def _write_json_atomic(self, path: Path, obj: object) -> None:
        fd, tmp = tempfile.mkstemp(prefix="json-", dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(obj, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @contextlib.contextmanager
    def _edit_index(self) -> Iterator[dict]:
        with self.lease(), self._index_lock():
            index = self._read_index()
            yield index
            self._write_json_atomic(self.root / "images.json", index)

    def put_image(self, image: Image, tags: Iterable[str] = ()) -> Digest:
        """Store an image (layers must be stored or readable), record it, tag it; returns its id."""
        validate_image(image)
        names = [normalize_tag(t) for t in tags]
        with self.lease():
            for layer in image.layers():
                if not self.has_blob(layer.digest):
                    with layer.open_compressed() as f:
                        self.put_layer(f, layer.media_type, layer.digest, layer.diff_id)
                elif not (self.root / "layers" / f"{layer.diff_id.hex}.json").exists():
                    self._record_layer(LayerRecord(layer.diff_id, layer.digest, layer.size, layer.media_type))
            self.put_bytes(image.raw_config(), image.id)
            manifest_digest = self.put_bytes(image.raw_manifest())
            with self._edit_index() as index:
                index["images"][image.id] = {"manifest": manifest_digest, "added": _now()}
                for name in names:
                    index["tags"][name] = image.id
        return image.id

    def tag(self, name: str, image: str) -> str:
        """Point the tag `name` at an image (id, id prefix, or another tag); returns the tag."""
        target = self.resolve(image).id
        tag = normalize_tag(name)
        with self._edit_index() as index:
            if target not in index["images"]:
                raise StoreError(f"image {target} vanished from the store")
            index["tags"][tag] = target
        return tag

    def untag(self, name: str) -> Digest:
        """Remove a tag; returns the image id it pointed at."""
        tag = normalize_tag(name)
        with self._edit_index() as index:
            if tag not in index["tags"]:
                raise StoreError(f"no such image tag: {name}")
            return Digest(index["tags"].pop(tag))

    def remove_image(self, image_id: str) -> list[str]:
        """Forget an image and all its tags (blobs go at the next prune); returns the tags removed."""
        with self._edit_index() as index:
            gone = [t for t, i in index["tags"].items() if i == image_id]
            for t in gone:
                del index["tags"][t]
            index["images"].pop(image_id, None)
        return gone

    def tags(self) -> dict[str, Digest]:
        return {t: Digest(i) for t, i in self._read_index()["tags"].items()}

    def images(self) -> list[ImageRecord]:
        index = self._read_index()
        by_id: dict[str, list[str]] = {}
        for t, i in sorted(index["tags"].items()):
            by_id.setdefault(i, []).append(t)
        return [ImageRecord(Digest(i), Digest(rec["manifest"]), tuple(by_id.get(i, ())), rec.get("added", ""))
                for i, rec in index["images"].items()]

    def image(self, ref: str, pull: bool = False) -> BasicImage:
        """A stored image by tag, `name@digest`, id or id prefix (same as `resolve`).

        `pull=True` is accepted for the build engine; pulling is the registry module's job, so a
        missing image still raises StoreError (with a hint to `pybuild pull`).
        """
        return self.resolve(ref)

    def image_by_id(self, image_id: str) -> BasicImage:
        """A stored image by its full id (config digest)."""
        rec = self._read_index()["images"].get(str(image_id))
        if rec is None:
            raise StoreError(f"image {image_id} is not in the store")
        return self.image_by_manifest(Digest(rec["manifest"]))

    def image_by_manifest(self, manifest_digest: Digest) -> BasicImage:
        raw_manifest = self.read_blob(manifest_digest)
        manifest = Manifest.from_json(raw_manifest)
        raw_config = self.read_blob(manifest.config.digest)
        config = ImageConfig.from_json(raw_config)
        if len(config.diff_ids) != len(manifest.layers):
            raise ImageFormatError(f"image {manifest.config.digest}: config and manifest disagree on layers")
        layers = tuple(BlobLayer(diff, d.digest, d.size, d.media_type, lambda dg=d.digest: self.open_blob(dg),
                                 self._uncompressed_size(diff))
                       for diff, d in zip(config.diff_ids, manifest.layers))
        return BasicImage(raw_config, layers, manifest.media_type, manifest.annotations, raw_manifest)

    def _uncompressed_size(self, diff_id: str) -> int:
        try:
            return self.layer_record(diff_id).uncompressed_size
        except (StoreError, OSError, ValueError):
            return 0

    def resolve(self, ref: str) -> BasicImage:
        """An image by tag (`name[:tag]`), `name@sha256:<manifest>`, or an id / unique id prefix."""
        index = self._read_index()
        if "@" in ref:
            digest = Digest(ref.split("@", 1)[1])
            for rec in index["images"].values():
                if rec["manifest"] == digest:
                    return self.image_by_manifest(digest)
            found = self._by_repo_digest(ref)
            if found is not None:
                return found
            raise StoreError(f"image {ref} is not in the store", hint="pybuild images lists the stored images")
        with contextlib.suppress(InvalidReferenceError):
            tag = normalize_tag(ref)
            if tag in index["tags"]:
                return self.image_by_id(index["tags"][tag])
        m = re.fullmatch(r"(?:sha256:)?([0-9a-f]{1,64})", ref)
        if m:
            hits = [i for i in index["images"] if Digest(i).hex.startswith(m.group(1))]
            if len(hits) == 1:
                return self.image_by_id(hits[0])
            if len(hits) > 1:
                raise StoreError(f"image id prefix {ref!r} is ambiguous ({len(hits)} images)",
                                 hint="give more digits of the image id")
        raise StoreError(f"image {ref!r} is not in the store",
                         hint="pybuild images lists the stored images; pybuild pull or import adds one")

    def _by_repo_digest(self, ref: str) -> BasicImage | None:
        """The image a pull or push recorded as `name@digest` (a pushed build's registry manifest, or a
        multi-platform index, has another digest than the local manifest), as `docker inspect` finds it."""
        if not (self.root / "registry.json").exists():
            return None
        from builder.oci.reference import parse_reference
        from builder.transfer import image_for_repo_digest

        try:
            return image_for_repo_digest(self, parse_reference(ref))
        except InvalidReferenceError:
            return None

    # ------------------------------------------------------------------ snapshots

    def snapshot_path(self, chain_id: str) -> Path:
        return self.root / "snapshots" / Digest(chain_id).hex

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
        resolved = [l if not isinstance(l, str) else self.layer(l) for l in layers]
        dirs: list[Path] = []
        for layer, chain in zip(resolved, chain_ids(l.diff_id for l in resolved)):
            path = self.snapshot_path(chain)
            if not path.is_dir():
                self._unpack_snapshot(layer, path, list(reversed(dirs)), on_bytes)
            dirs.append(path)
        return dirs

    def rootfs_dirs(self, image: Image) -> list[Path]:
        """The snapshot directories of an image's layers, lowest first (for overlay lowerdir)."""
        return self.snapshot_dirs(list(image.layers()))

    def _unpack_snapshot(self, layer: Layer, path: Path, lowers: list[Path],
                         on_bytes: Callable[[int], object] | None = None) -> None:
        with self.lease():
            tmp = Path(tempfile.mkdtemp(prefix="snap-", dir=self.root / "tmp"))
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
                                                   compress.codec_of(layer.media_type), _limit(limit))
        else:
            opened = layer.open_uncompressed(_limit(limit))
        with opened as raw:
            counted = h.update if on_bytes is None else (lambda data: (h.update(data), on_bytes(len(data))))
            reader = _Prefetch(raw, counted)
            try:
                extract(reader, dest, overlay=overlay, lowers=lowers)  # type: ignore[arg-type]
                while reader.read(CHUNK):
                    pass
            finally:
                reader.close()
        if "sha256:" + h.hexdigest() != layer.diff_id:
            raise DigestMismatchError(f"layer {layer.digest} unpacks to sha256:{h.hexdigest()}, "
                                      f"not its diff_id {layer.diff_id}")

    # ------------------------------------------------------------------ garbage collection

    def _root_digests(self) -> set[str]:
        found: set[str] = set()
        # Only build-cache entries and container state name what must stay: not the memo (a rebuild
        # re-checks that its image exists), not context checksums, never the files of cache mounts.
        for pattern in ("cache/keys/*/*.json", "containers/*/*.json"):
            for path in self.root.glob(pattern):
                with contextlib.suppress(OSError):
                    found.update(m.decode() for m in _DIGEST_TEXT.findall(path.read_bytes()))
        return found

    def prune(self, wait: bool = True) -> PruneReport:
        """Remove images no tag/cache/container references, unreferenced blobs, snapshots and temp files.

        Takes the store lock exclusively, so it waits for (and never races) writers holding a lease.
        """
        if self._lease_depth:
            raise StoreError("prune cannot run while this process holds a store lease")
        report = PruneReport()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StoreError("the store is busy (a build or pull is writing)", hint="try again later") from None
            self._prune_locked(report)
        finally:
            os.close(fd)
        return report

    def _prune_locked(self, report: PruneReport) -> None:
        roots = self._root_digests()
        with self._index_lock():
            index = self._read_index()
            tagged = set(index["tags"].values())
            keep_images = {i for i, rec in index["images"].items()
                           if i in tagged or i in roots or rec["manifest"] in roots}
            report.images = sorted(set(index["images"]) - keep_images)
            if report.images:
                index["images"] = {i: r for i, r in index["images"].items() if i in keep_images}
                self._write_json_atomic(self.root / "images.json", index)
        keep_blobs, keep_diffs, keep_chains = set(roots), set(roots), set(roots)
        for image_id in keep_images:
            try:
                img = self.image_by_id(image_id)
            except (StoreError, ImageFormatError):
                continue
            keep_blobs.update({img.id, img.digest, *(l.digest for l in img.layers())})
            diffs = [l.diff_id for l in img.layers()]
            keep_diffs.update(diffs)
            keep_chains.update(chain_ids(diffs))
        for path in (self.root / "layers").glob("*.json"):
            diff = "sha256:" + path.stem
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if diff in keep_diffs or rec.get("digest") in keep_blobs:
                keep_blobs.add(rec.get("digest", ""))
            else:
                path.unlink(missing_ok=True)
        for path in (self.root / "blobs" / "sha256").iterdir():
            if "sha256:" + path.name not in keep_blobs:
                report.bytes_freed += path.stat().st_size
                path.unlink()
                report.blobs += 1
        for path in (self.root / "snapshots").iterdir():
            if "sha256:" + path.name not in keep_chains:
                shutil.rmtree(path, ignore_errors=True)
                report.snapshots += 1
        from builder.cache.keys import BuildCache  # the cache's own file format

        BuildCache(self.root).forget_copy_results(lambda chain: chain in keep_chains)
        for path in (self.root / "tmp").iterdir():  # no lease is held, so nothing here is in use
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            report.temp += 1
