"""Images between a registry and the store: pull, push, resolve, and `ensure_image` for FROM.

    pull(store, ref)                  registry -> store (platform chosen from an index)
    push(store, "app:1", ref)         store -> registry: blobs first (HEAD skip, mount, upload), manifest last
    ensure_image(store, "tomcat:9")   the local image, pulled first when missing (or always)
    resolve_digest(ref)               the manifest (or index) digest a tag points at, for `pybuild pin`
    load(store, "image.tar")          a docker-archive or OCI layout (tar, directory, stream) -> store

Blobs are downloaded through the store's blob writer (`Store.ingest`) with their expected
digest, so a bad blob is never stored. Which repositories of a registry hold a blob, and the
repo digests of pulls and pushes, are kept by the store (`Store.record_registry`), to mount
instead of upload on push. This is the one module that imports both the registry client and the store.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Callable, Sequence

from builder.errors import DigestMismatchError, ImageFormatError, RegistryError, StoreError
from builder.oci import platform as platforms
from builder.oci.image import BasicImage, BlobLayer, Image
from builder.oci.model import Descriptor, Digest, Platform
from builder.oci.reference import Reference, normalize_tag, parse_reference
from builder.registry.client import RegistryClient, client_for
from builder.registry.remote import image as remote_image
from builder.registry.remote import parallel, ticker
from builder.registry.remote import write as remote_write
from builder.registry.transport import RegistryOptions
from builder.store import LayerRecord, Store
from builder.store.images import familiar_name as _familiar_name
from builder.util.progress import Progress

if TYPE_CHECKING:
    from builder.oci.layout import LayoutSource

__all__ = ["pull", "pull_all", "push", "push_image", "push_index", "ensure_image", "resolve_digest", "PullResult", "PushResult",
           "download_to_store", "load"]


@dataclass(frozen=True)
class PullResult:
    image: BasicImage
    digest: Digest          # what the reference resolved to (an index digest for multi-arch images)
    repo_digest: str        # name@digest
    downloaded: int         # bytes fetched (0 when every blob was already stored)


@dataclass(frozen=True)
class PushResult:
    digest: Digest
    repo_digest: str
    uploaded: int           # bytes sent
    mounted: int            # blobs mounted from another repository
    skipped: int            # blobs the registry already had


# -- pull --------------------------------------------------------------------------------------------

def download_to_store(store: Store, client: RegistryClient, repository: str, desc: Descriptor,
                      progress: Callable[[int], None] | None = None) -> None:
    """Fetch one blob into the store unless it is there already; verified before it is stored."""
    if store.has_blob(desc.digest):
        return
    with store.ingest(desc.digest) as writer:
        client.download_blob(repository, desc, writer, progress)


def pull(store: Store, ref: Reference, *, platform: Platform | None = None, options: RegistryOptions | None = None,
         progress: Progress | None = None, step: int = 0, tag: bool = True) -> PullResult:
    """Pull `ref` into the store and tag it (when the reference has a tag, and `tag`); returns the image."""
    try:
        return _pull(store, ref, platform=platform, options=options, progress=progress, step=step, tag=tag)
    except DigestMismatchError as exc:  # a blob that is not what its descriptor says: name what was pulled
        if str(ref) in exc.message:
            raise
        raise DigestMismatchError(f"pulling {ref}: {exc.message}", hint=exc.hint) from None


def _pull(store: Store, ref: Reference, *, platform: Platform | None, options: RegistryOptions | None,
          progress: Progress | None, step: int, tag: bool) -> PullResult:
    progress = progress or Progress()
    want = platform or platforms.host()
    with store.lease():
        remote = remote_image(ref, options, want, known=lambda d: store.read_blob(d) if store.has_blob(d) else None)
        manifest = remote.manifest()
        config_bytes = remote.raw_config()
        config = remote.config()
        if not remote.from_index and not platforms.matches(config.platform, want):  # a single-platform image
            if platform is not None:
                raise RegistryError(f"{ref.familiar()} is for {config.platform}, not the requested {want}",
                                    hint="pull without --platform, or choose an image built for it")
            progress.info(f"WARNING: {ref.familiar()} is for {config.platform}, not this machine's {want}")
        missing = [d for d in manifest.layers if not store.has_blob(d.digest)]
        total = sum(d.size for d in missing)

        for desc in manifest.layers:
            if desc not in missing:
                progress.info(f"{desc.digest.short}: Already exists")

        stop = threading.Event()

        def fetch(desc: Descriptor) -> None:
            task = progress.bytes_task(step, f"{desc.digest.short}", desc.size)
            try:
                if not store.has_blob(desc.digest):
                    with store.ingest(desc.digest) as writer:
                        remote.download(desc, writer, ticker(task.update, stop))
            finally:
                task.close()
            progress.info(f"{desc.digest.short}: Pull complete")

        parallel(fetch, missing, stop)
        store.put_bytes(config_bytes, manifest.config.digest)  # after the layers: a failed pull stores no config
        layers = tuple(BlobLayer(diff, d.digest, d.size, d.media_type, functools.partial(store.open_blob, d.digest))
                       for diff, d in zip(config.diff_ids, manifest.layers))
        image = BasicImage(config_bytes, layers, remote.media_type, manifest.annotations, remote.raw_manifest())
        # a digest reference pins content; like Docker, it never moves a tag (name:tag@digest included)
        tags = [normalize_tag(_familiar_name(ref) + ":" + ref.tag)] if tag and ref.tag and not ref.digest else []
        # of an index, the name points at the registry's index (its bytes, partial: this image only) on a
        # plain pull, and keeps pointing at it when another platform of the same index is pulled
        keep_index = remote.raw_index is not None and (platform is None or bool(tags) and all(
            store.tags().get(t) == remote.index_digest for t in tags))
        store.put_image(image, [] if keep_index else tags)
        repo_digest = f"{_familiar_name(ref)}@{remote.index_digest}"
        store.record_registry(ref.name, [manifest.config.digest, *(d.digest for d in manifest.layers)], image.id,
                              repo_digest)
        if keep_index and remote.raw_index is not None:
            store.put_index(remote.raw_index, tags, partial=True)
            store.record_registry(ref.name, [], str(remote.index_digest), repo_digest)
    return PullResult(image, remote.index_digest, repo_digest, total)


def pull_all(store: Store, ref: Reference, *, options: RegistryOptions | None = None,
             progress: Progress | None = None) -> PullResult:
    """Pull every platform's image of the index `ref` names, and the index itself (byte for byte, so
    its digest stays the registry's); the tag then names the index. A single image is pulled as `pull`
    does. The result's image is this machine's (or else the first)."""
    from dataclasses import replace

    from builder.oci.model import INDEX_TYPES, Index

    client = client_for(ref.registry, options)
    data, media_type, top = client.get_manifest(ref.repository, ref.identifier)
    if media_type not in INDEX_TYPES:
        return pull(store, ref, options=options, progress=progress)
    index = Index.from_json(data)
    entries = [d for d in index.manifests if d.platform is not None and d.platform.architecture != "unknown"]
    if not entries:
        raise RegistryError(f"{ref.familiar()}: the index lists no image for a platform")
    results = [pull(store, replace(ref, tag=None, digest=str(d.digest)), platform=d.platform, options=options,
                    progress=progress) for d in entries]
    tags = [normalize_tag(_familiar_name(ref) + ":" + ref.tag)] if ref.tag and not ref.digest else []
    with store.lease():
        digest = store.put_index(data, tags)
        repo_digest = f"{_familiar_name(ref)}@{top}"
        store.record_registry(ref.name, [], str(digest), repo_digest)
    here = next((r for r, d in zip(results, entries) if platforms.matches(d.platform, platforms.host())),  # type: ignore[arg-type]
                results[0])
    return PullResult(here.image, top, repo_digest, sum(r.downloaded for r in results))


_parallel = parallel  # the name builder/cache/export.py uses


def resolve_digest(ref: Reference, options: RegistryOptions | None = None) -> Digest:
    """The digest the registry serves for `ref` (an index digest for multi-arch images)."""
    client = client_for(ref.registry, options)
    desc = client.head_manifest(ref.repository, ref.identifier)
    if desc is not None:
        return desc.digest
    _data, _mt, digest = client.get_manifest(ref.repository, ref.identifier)
    return digest


def ensure_image(store: Store, ref: str, platform: Platform | str | None = None, pull_always: bool = False, *,
                 options: RegistryOptions | None = None, progress: Progress | None = None, step: int = 0) -> Image:
    """The image `ref` names, from the store, or pulled when it is missing (always with `pull_always`).

    This is what `FROM` calls: a local name (an imported or built image) never needs a registry.
    """
    want = platforms.parse(platform) if isinstance(platform, str) or platform is None else platform
    parsed = parse_reference(ref)
    here = platform is None or platforms.matches(platforms.host(), want)
    if not pull_always:
        local = _local_image(store, ref, parsed)
        if local is not None and (platform is None or platforms.matches(local.config().platform, want)):
            return local
        if local is not None and not here:  # a stored (maybe partial) index: its image for the platform
            with contextlib.suppress(StoreError, platforms.PlatformError):
                return store.resolve(_familiar_name(parsed) + ":" + (parsed.tag or "latest"), want)
        for repo_digest in store.repo_digests(local.id) if local is not None and not here else ():
            # the index the name was pulled from: its image for this platform may be stored already
            other = store.image_for_repo_digest(parse_reference(repo_digest), want)
            if other is not None:
                return other
    try:  # an image for another platform than this machine's never takes the name (a plain FROM reads it)
        return pull(store, parsed, platform=None if here else want, options=options,
                    progress=progress, step=step, tag=here).image
    except RegistryError as exc:
        guess = _did_you_mean(store, parsed)
        if exc.status == 404 or "MANIFEST_UNKNOWN" in exc.codes or "NAME_UNKNOWN" in exc.codes:
            raise RegistryError(f"image {ref!r} is not in the store and {parsed.registry} does not have it: {exc.message}",
                                status=exc.status, codes=exc.codes,
                                hint=guess or "check the name, or build/import it first (pybuild images lists local "
                                              "ones)") from None
        if exc.status is None:  # no answer: no such host, refused, offline
            raise RegistryError(f"image {ref!r} is neither in the store nor reachable: {exc.message}",
                                temporary=exc.temporary,
                                hint=guess or (f"{exc.hint}; " if exc.hint else "") + "offline, pybuild import or "
                                "pybuild load can add it (pybuild images lists local ones)") from None
        raise


def _did_you_mean(store: Store, ref: Reference) -> str | None:
    """`did you mean busybox:latest?` when a local image name is close to the one asked for."""
    import difflib

    wanted = Reference(ref.registry, ref.repository, ref.tag or "latest").familiar()
    names = sorted(store.tags())
    found = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
    if not found:
        repos = {n.rsplit(":", 1)[0]: n for n in names}
        found = [repos[r] for r in difflib.get_close_matches(wanted.rsplit(":", 1)[0], list(repos), n=1, cutoff=0.6)]
    return f"did you mean {found[0]}? (a local image)" if found else None


def _local_image(store: Store, text: str, ref: Reference) -> BasicImage | None:
    if ref.digest:
        found = store.image_for_repo_digest(ref)
        if found is not None:
            return found
        try:
            return store.resolve(f"{_familiar_name(ref)}@{ref.digest}")
        except StoreError:
            return None
    try:
        return store.resolve(_familiar_name(ref) + ":" + (ref.tag or "latest"))
    except (StoreError, platforms.PlatformError):  # missing, or of a partial index, not pulled for this machine
        return None


# -- push ----------------------------------------------------------------------------------------------

def push(store: Store, source: str, ref: Reference, *, options: RegistryOptions | None = None,
         progress: Progress | None = None, step: int = 0) -> PushResult:
    """Push the stored image `source` (a local name or id) to `ref`; the manifest goes last.

    Blobs the registry has are skipped (HEAD), blobs known in another repository of the same
    registry are mounted, the rest uploaded in parallel. Pushing an unchanged image sends no blob.
    """
    found = store.index(source)
    if found is not None:  # a multi-platform image: every image, then the index
        missing = store.missing_images(found[1])
        if missing:
            names = ", ".join(platforms.format_platform(d.platform) for d in missing)  # type: ignore[arg-type]
            raise StoreError(f"cannot push {source}: its index names images that were never pulled ({names}); "
                             "a registry index must have every image it lists",
                             hint=f"pybuild pull --platform all {source} first (it adds the missing images)")
        images = [store.image_by_manifest(d.digest) for d in found[1].manifests
                  if d.platform is None or d.platform.architecture != "unknown"]
        return push_index(store, images, ref, options=options, progress=progress, step=step, index_id=found[0],
                          raw_index=store.read_blob(found[0]))
    image = store.resolve(source)
    return push_image(store, image, ref, options=options, progress=progress, step=step)


def push_index(store: Store, images: Sequence[Image], ref: Reference, *, options: RegistryOptions | None = None,
               progress: Progress | None = None, step: int = 0, compression: str = "gzip",
               level: int | None = None, force_compression: bool = False, index_id: str | None = None,
               raw_index: bytes | None = None) -> PushResult:
    """Push a multi-platform image: each image by its manifest digest (layers compressed as in
    `push_image`), then the OCI index of them under `ref`'s tag; returns the index's digest
    (recorded as a repo digest of the stored index `index_id`, when given). `raw_index` (a stored
    index, e.g. a registry's) is pushed byte for byte when it lists exactly the pushed manifests."""
    from dataclasses import replace

    from builder.oci.image import index_of
    from builder.oci.model import OCI_INDEX, Index

    uploaded = mounted = skipped = 0
    with store.lease():
        packed = [store.compressed_image(img, compression, level, force=force_compression) for img in images]
        for img in packed:
            r = _push_image(store, img, replace(ref, tag=None, digest=str(img.digest)), options, progress, step)
            uploaded, mounted, skipped = uploaded + r.uploaded, mounted + r.mounted, skipped + r.skipped
        raw, media_type = index_of(packed).to_json(), OCI_INDEX
        if raw_index is not None:
            kept = Index.from_json(raw_index)
            if {d.digest for d in kept.manifests} == {img.digest for img in packed}:
                raw, media_type = raw_index, kept.media_type or OCI_INDEX
        digest = client_for(ref.registry, options).put_manifest(ref.repository, ref.tag or ref.digest or "latest",
                                                                raw, media_type)
        repo_digest = f"{_familiar_name(ref)}@{digest}"
        store.record_registry(ref.name, [], index_id, repo_digest)
    return PushResult(digest, repo_digest, uploaded, mounted, skipped)


def push_image(store: Store, image: Image, ref: Reference, *, options: RegistryOptions | None = None,
               progress: Progress | None = None, step: int = 0, compression: str = "gzip",
               level: int | None = None, force_compression: bool = False) -> PushResult:
    """Push an `Image` whose blobs are in the store (see `push`); uncompressed layers (a build's)
    go as `compression` copies (`Store.compressed_image`, gzip unless `build --output
    type=registry,compression=...` says otherwise; with `force_compression`, every layer):
    same image id, another manifest digest."""
    with store.lease():  # the compressed copies are not referenced by anything until the push ends
        packed = store.compressed_image(image, compression, level, force=force_compression)
        return _push_image(store, packed, ref, options, progress, step)


def _push_image(store: Store, image: Image, ref: Reference, options: RegistryOptions | None,
                progress: Progress | None, step: int) -> PushResult:
    manifest = image.manifest()
    blobs = [manifest.config, *manifest.layers]
    with store.lease():
        for desc in manifest.layers:
            if not store.has_blob(desc.digest):
                raise StoreError(f"blob {desc.digest} of {ref.familiar()} is not in the store",
                                 hint="the image is incomplete; pull or build it again")
        stored = BasicImage(image.raw_config(),
                            tuple(BlobLayer(l.diff_id, l.digest, l.size, l.media_type,
                                            functools.partial(store.open_blob, l.digest, False))
                                  for l in image.layers()),
                            manifest.media_type, manifest.annotations, image.raw_manifest())
        result = remote_write(ref, stored, options, mount_from=store.blob_sources(d.digest for d in blobs),
                              progress=progress, step=step)
        repo_digest = f"{_familiar_name(ref)}@{result.digest}"
        store.record_registry(ref.name, result.blobs, image.id, repo_digest)
    return PushResult(result.digest, repo_digest, result.uploaded, result.mounted, result.skipped)


# -- load ------------------------------------------------------------------------------------------------

def load(store: Store, source: str | os.PathLike[str] | IO[bytes],
         platform: Platform | None = None) -> list[tuple[str, list[str]]]:
    """Load every image of a docker-archive or OCI layout (tar or directory) into `store`.

    Returns (image id, tags) per image. Digests and diff_ids are verified; nothing
    unverified is stored. A multi-platform index gives its image for `platform` (default:
    this machine's); an index without one is an error.
    """
    import tarfile

    from builder.oci.archive import open_archive  # archives: not imported by pull and push

    with store.lease(), open_archive(source, store.tmp_dir()) as src:
        try:
            return _load(store, src, platform)
        except tarfile.TarError as exc:
            raise ImageFormatError(f"{src.label}: corrupt image archive: {exc}") from None
        except ImageFormatError as exc:  # one from a model parser names the document, not the archive
            if exc.message.startswith(src.label):
                raise
            raise ImageFormatError(f"{src.label}: {exc.message}", hint=exc.hint) from None


def _stored_layer(store: Store, diff_id: Digest) -> LayerRecord | None:
    """The layer already stored for `diff_id` (its blob present): a docker-archive layer the store
    has is not compressed again, nor does its record change (a built image keeps its manifest)."""
    try:
        rec = store.layer_record(diff_id)
    except (StoreError, ValueError, KeyError):  # missing, or a damaged record that put_tar rewrites
        return None
    return rec if store.has_blob(rec.digest) else None


def _load(store: Store, src: "LayoutSource", platform: Platform | None) -> list[tuple[str, list[str]]]:
    from builder.oci.archive import read_docker_archive
    from builder.oci.layout import read_oci_layout

    results: list[tuple[str, list[str]]] = []
    if src.has("manifest.json"):
        for config_image, tags, layer_names in read_docker_archive(src):
            config = config_image.config()
            if len(config.diff_ids) != len(layer_names):
                raise ImageFormatError(f"{src.label}: {len(layer_names)} layers for {len(config.diff_ids)} diff_ids")
            layers = []
            for name, diff_id in zip(layer_names, config.diff_ids):
                rec = _stored_layer(store, diff_id)
                if rec is None:
                    with src.open(name) as f:
                        rec = store.put_tar(f, diff_id=diff_id)
                layers.append(store.layer(rec))
            image = BasicImage(config_image.raw_config(), tuple(layers))
            names = [normalize_tag(t) for t in tags]
            results.append((store.put_image(image, names), names))
        return results
    if src.has("index.json"):
        for image, tags in read_oci_layout(src, platform):
            names = [normalize_tag(t) for t in tags]
            results.append((store.put_image(image, names), names))
        return results
    raise ImageFormatError(f"{src.label}: neither a docker-archive (manifest.json) nor an OCI layout (index.json)")
