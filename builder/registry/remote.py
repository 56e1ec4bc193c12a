"""Images in a registry as `Image`s: `image(ref)` reads one, `write(ref, image)` pushes one.

    remote = image(ref, options, platform)   # manifest and config fetched; layers stream on demand
    result = write(ref, some_image, options, mount_from={digest: ["host/repo", ...]})

Nothing here knows about the image store: an image to push is any `Image` whose layers open
their compressed blobs (builder/oci/image.py), and where blobs were seen before (for cross-repo
mounts) is the caller's to say. builder/transfer.py moves images between here and the store.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from dataclasses import dataclass
from typing import IO, Any, Callable, Mapping, Sequence, TypeVar

from builder.errors import DigestMismatchError, ImageFormatError, RegistryError
from builder.oci import platform as platforms
from builder.oci.image import BasicImage, BlobLayer, Image, Layer
from builder.oci.model import (INDEX_TYPES, MANIFEST_TYPES, Descriptor, Digest, ImageConfig, Index, Manifest,
                               Platform, loads_json)
from builder.oci.reference import Reference
from builder.registry.client import BlobSink, RegistryClient, client_for
from builder.registry.transport import RegistryOptions
from builder.util.progress import Progress

__all__ = ["RemoteImage", "WriteResult", "image", "write", "parallel", "ticker", "Stopped", "PARALLEL",
           "CONFIG_TYPES"]

PARALLEL = 4
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
T = TypeVar("T")


class Stopped(Exception):
    """Raised in a worker when a sibling failed or the user pressed Ctrl-C."""


def parallel(fn: Callable[[T], Any], items: Sequence[T], stop: threading.Event | None = None) -> list[Any]:
    """Run `fn` over `items` on up to PARALLEL threads. If one fails (or Ctrl-C), `stop` is set so
    the others can give up at their next chunk (see `ticker`), and the first error is raised."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor  # not needed by a push with nothing to send

    stop = stop or threading.Event()
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(items))) as pool:
        futures = [pool.submit(fn, i) for i in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise


def ticker(update: Callable[[int], object], stop: threading.Event) -> Callable[[int], None]:
    """A progress callback that raises `Stopped` once `stop` is set (so a worker gives up)."""
    def tick(n: int) -> None:
        if stop.is_set():
            raise Stopped("stopped")
        update(n)
    return tick


# -- reading ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteImage:
    """An image in a registry (an `Image`): manifest and config fetched, layers streamed on demand.

    `index_digest` is what the reference resolved to (an index digest for a multi-platform image;
    the manifest digest otherwise); `download` fetches one blob with resuming, into a file or a sink.
    """

    ref: Reference
    index_digest: Digest
    media_type: str
    base: BasicImage
    client: RegistryClient
    raw_index: bytes | None = None  # the index's bytes as served, when the reference named one

    @property
    def id(self) -> Digest:
        return self.base.id

    @property
    def digest(self) -> Digest:
        return self.base.digest

    @property
    def from_index(self) -> bool:
        """Whether the reference named an index (the image was chosen from it by platform)."""
        return self.index_digest != self.base.digest

    def raw_config(self) -> bytes:
        return self.base.raw_config()

    def config(self) -> ImageConfig:
        return self.base.config()

    def raw_manifest(self) -> bytes:
        return self.base.raw_manifest()

    def manifest(self) -> Manifest:
        return self.base.manifest()

    def layers(self) -> Sequence[Layer]:
        return self.base.layers()

    def download(self, desc: Descriptor, dest: BlobSink, progress: Callable[[int], None] | None = None) -> None:
        """Fetch one blob of this image into `dest` (verified, resumed after a broken connection)."""
        self.client.download_blob(self.ref.repository, desc, dest, progress)


def _media_type(data: bytes, ref: Reference) -> str:
    """The mediaType a manifest names inside itself (a registry that sent no Content-Type)."""
    if not data.startswith(b"{"):
        return ""
    try:
        doc = loads_json(data, f"{ref}: manifest")
    except ImageFormatError as exc:
        raise RegistryError(exc.message) from None
    return str(doc.get("mediaType", "")) if isinstance(doc, dict) else ""


def _fetch_manifest(client: RegistryClient, ref: Reference,
                    want: Platform) -> tuple[bytes, str, Digest, Digest, bytes | None]:
    """(manifest bytes, media type, manifest digest, top-level digest, index bytes or None) for `ref` on `want`."""
    data, media_type, top = client.get_manifest(ref.repository, ref.identifier)
    if not media_type:
        media_type = str(_media_type(data, ref))
    if media_type in INDEX_TYPES:
        try:
            chosen = platforms.select(Index.from_json(data), want)
        except (platforms.PlatformError, ImageFormatError) as exc:
            raise RegistryError(f"{ref}: {exc.message}", hint=exc.hint) from None
        index_data = data
        data, media_type, digest = client.get_manifest(ref.repository, chosen.digest)
        return data, media_type, digest, top, index_data
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"{ref.familiar()}: unsupported manifest type {media_type or 'unknown'!r}",
                            hint="pybuild pulls OCI and Docker schema 2 images")
    return data, media_type, top, top, None


def image(ref: Reference, options: RegistryOptions | None = None, platform: Platform | None = None, *,
          known: Callable[[Digest], bytes | None] | None = None) -> RemoteImage:
    """The image `ref` names (from an index, the one for `platform`, default: this machine's).

    The manifest and config are fetched (and verified; a config `known(digest)` returns, verified
    by the caller, is not fetched again); layer blobs are read when opened.
    """
    client = client_for(ref.registry, options)
    want = platform or platforms.host()
    data, media_type, digest, top, raw_index = _fetch_manifest(client, ref, want)
    try:
        manifest = Manifest.from_json(data)
    except ImageFormatError as exc:  # name the image, as the other bad manifests are
        raise ImageFormatError(f"{ref}: {exc.message}", hint=exc.hint) from None
    if manifest.config.media_type not in CONFIG_TYPES:
        raise RegistryError(f"{ref.familiar()} is not a container image (config type {manifest.config.media_type})")
    raw_config = (known(manifest.config.digest) if known else None) or client.fetch_blob(ref.repository,
                                                                                         manifest.config)
    if len(raw_config) != manifest.config.size:  # (a config stored before is not fetched: check it here too)
        raise DigestMismatchError(f"{ref.registry}: {ref}: the config {manifest.config.digest} is {len(raw_config)} "
                                  f"bytes, its descriptor says {manifest.config.size}; nothing was stored")
    config = ImageConfig.from_json(raw_config)
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageFormatError(f"{ref.familiar()}: the config lists {len(config.diff_ids)} layers, "
                               f"the manifest {len(manifest.layers)}")
    layers = tuple(BlobLayer(diff, d.digest, d.size, d.media_type,
                             functools.partial(client.open_blob, ref.repository, d))
                   for diff, d in zip(config.diff_ids, manifest.layers))
    base = BasicImage(raw_config, layers, media_type, manifest.annotations, data)
    return RemoteImage(ref, top, media_type, base, client, raw_index)


# -- writing ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WriteResult:
    digest: Digest          # the manifest digest the registry has under the tag
    uploaded: int           # bytes sent
    mounted: int            # blobs mounted from another repository
    skipped: int            # blobs the registry already had
    blobs: tuple[Digest, ...]  # every blob of the image (config first), now in the repository


def write(ref: Reference, img: Image, options: RegistryOptions | None = None, *,
          mount_from: Mapping[str, Sequence[str]] | None = None, progress: Progress | None = None,
          step: int = 0) -> WriteResult:
    """Push `img` to `ref`; the manifest goes last, byte for byte as `img.raw_manifest()`.

    Blobs the registry has are skipped (HEAD); a blob `mount_from` lists in another repository of
    the same registry (`host/repo` names, latest last) is mounted; the rest is uploaded in parallel
    from the layers' `open_compressed`. A tag that already names this manifest sends no blob.
    """
    progress = progress or Progress()
    client = client_for(ref.registry, options)
    manifest = img.manifest()
    raw = img.raw_manifest()
    blobs = [manifest.config, *manifest.layers]
    known = mount_from or {}
    sources = {d.digest: [s for s in known.get(d.digest, ()) if s.startswith(ref.registry + "/") and s != ref.name]
               for d in blobs}
    raw_config = img.raw_config()
    openers: dict[str, Callable[[], IO[bytes]]] = {manifest.config.digest: lambda: io.BytesIO(raw_config)}
    for layer in img.layers():
        openers.setdefault(layer.digest, layer.open_compressed)
    counts = {"uploaded": 0, "mounted": 0, "skipped": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def send(desc: Descriptor) -> None:
        if client.has_blob(ref.repository, desc.digest):
            kind, note = "skipped", "Layer already exists"
        elif (mounted_from := next((s.split("/", 1)[1] for s in sources[desc.digest][-2:]
                                    if client.mount_blob(ref.repository, desc.digest, s.split("/", 1)[1])), None)):
            kind, note = "mounted", f"Mounted from {mounted_from}"
        else:
            opener = openers.get(desc.digest)
            if opener is None:
                raise ImageFormatError(f"{ref.familiar()}: the manifest lists blob {desc.digest}, "
                                       "which is none of the image's layers")
            task = progress.bytes_task(step, desc.digest.short, desc.size)
            try:
                client.upload_blob(ref.repository, desc, opener, ticker(task.update, stop))
            finally:
                task.close()
            kind, note = "uploaded", "Pushed"
        if desc is not manifest.config:
            progress.info(f"{desc.digest.short}: {note}")
        with lock:
            counts[kind] += desc.size if kind == "uploaded" else 1

    identifier = ref.tag or ref.digest or "latest"
    if ref.digest and ref.digest != Digest.of(raw):
        raise RegistryError(f"cannot push to {ref.familiar()}: the image's manifest digest is {Digest.of(raw)}")
    current = client.head_manifest(ref.repository, identifier, accept=(manifest.media_type,))
    if current is not None and current.digest == Digest.of(raw):
        # the tag already names this manifest, and a registry only accepts a manifest whose
        # blobs it has: nothing to send
        digest = current.digest
        counts["skipped"] = len(blobs)
    else:
        parallel(send, blobs, stop)
        digest = client.put_manifest(ref.repository, identifier, raw, manifest.media_type)
    return WriteResult(digest, counts["uploaded"], counts["mounted"], counts["skipped"],
                       tuple(d.digest for d in blobs))
