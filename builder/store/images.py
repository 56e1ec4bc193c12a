"""Images: the index (`images.json`: images, multi-platform indexes and tags), resolving names
(a tag of an index resolves to its image for a platform, the host's by default), and what the store knows
of registries (`registry.json`: the repo digests of pulls and pushes, and which repositories hold
a blob, for cross-repository mounts)."""

from __future__ import annotations

import functools
import contextlib
import fcntl
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from builder.errors import ImageFormatError, InvalidReferenceError, StoreError
from builder.oci.image import BasicImage, BlobLayer, Image, validate_image
from builder.oci.model import Digest, ImageConfig, Index, Manifest, Platform
from builder.oci.reference import Reference, normalize_tag, parse_reference
from builder.store.layers import LayerRecord, LayerStore
from builder.store.lookup import read_index
from builder.util.atomic import write_atomic

__all__ = ["ImageRecord", "ImageStore", "normalize_tag", "familiar_name"]

_BLOB_SOURCES_KEPT = 8  # the latest few repositories are enough to mount from


@dataclass(frozen=True)
class ImageRecord:
    """An image in the store, as `pybuild images` lists it."""

    id: Digest
    manifest: Digest
    tags: tuple[str, ...]
    added: str


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def familiar_name(ref: Reference) -> str:
    """The repository of `ref` as Docker prints it (`tomcat`, `localhost:5000/x`), no tag or digest."""
    return Reference(ref.registry, ref.repository).familiar()


class ImageStore(LayerStore):
    """The images and tags of a store, and its registry bookkeeping."""

    # ------------------------------------------------------------------ the index

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        fd = os.open(self.root / "images.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_index(self) -> dict:
        return read_index(self.root)

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
                elif not self.has_layer_record(layer.diff_id):
                    self._record_layer(LayerRecord(layer.diff_id, layer.digest, layer.size, layer.media_type))
            self.put_bytes(image.raw_config(), image.id)
            manifest_digest = self.put_bytes(image.raw_manifest())
            with self._edit_index() as index:
                index["images"][image.id] = {"manifest": manifest_digest, "added": _now()}
                for name in names:
                    index["tags"][name] = image.id
        return image.id

    def put_index(self, index: Index | bytes, tags: Iterable[str] = ()) -> Digest:
        """Store a multi-platform index (or its bytes, as a registry served them) whose images are
        stored (`put_image`), and point `tags` at it; returns its digest (what `images` lists as its
        id, and what a tag of it names). Entries that are no image for a platform (BuildKit's
        attestations: `unknown/unknown`) need not be stored."""
        names = [normalize_tag(t) for t in tags]
        raw = index if isinstance(index, bytes) else index.to_json()
        with self.lease():
            for desc in Index.from_json(raw).manifests:
                if desc.platform is not None and desc.platform.architecture != "unknown":
                    self.image_by_manifest(desc.digest)  # every image is here, readable
            digest = self.put_bytes(raw)
            with self._edit_index() as data:
                data.setdefault("indexes", {})[digest] = {"added": _now()}
                for name in names:
                    data["tags"][name] = digest
        return digest

    def listed_image(self, image_id: str) -> BasicImage:
        """The image an `images()` record stands for: the image itself, or of an index, its image for
        this machine (else its first stored one)."""
        from builder.oci import platform as platforms

        found = self.index(image_id)
        if found is None:
            return self.image_by_id(image_id)
        entries = sorted(found[1].manifests, key=lambda d: not (d.platform and platforms.matches(d.platform,
                                                                                               platforms.host())))
        for desc in entries:
            with contextlib.suppress(StoreError):
                return self.image_by_manifest(desc.digest)
        raise StoreError(f"index {image_id} has none of its images in the store")

    def index(self, ref: str) -> tuple[Digest, Index] | None:
        """(digest, index) when `ref` (a tag, `name@digest`, or a digest / unique prefix) names a stored
        multi-platform index; None when it names a single image or nothing."""
        data = self._read_index()
        indexes = data.get("indexes", {})
        if not indexes:
            return None
        digest: str | None = None
        if "@" in ref:
            digest = ref.split("@", 1)[1]
        else:
            with contextlib.suppress(InvalidReferenceError):
                digest = data["tags"].get(normalize_tag(ref))
            m = re.fullmatch(r"(?:sha256:)?([0-9a-f]{1,64})", ref)
            if digest is None and m:
                hits = [d for d in indexes if Digest(d).hex.startswith(m.group(1))]
                digest = hits[0] if len(hits) == 1 else None
        if digest is None or digest not in indexes:
            return None
        return Digest(digest), Index.from_json(self.read_blob(Digest(digest)))

    def tag(self, name: str, image: str) -> str:
        """Point the tag `name` at an image (id, id prefix, or another tag); returns the tag."""
        found = self.index(image)
        target = found[0] if found is not None else self.resolve(image).id
        tag = normalize_tag(name)
        with self._edit_index() as index:
            if target not in index["images"] and target not in index.get("indexes", {}):
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
        """Forget an image and all its tags (blobs go at the next prune); returns the tags removed.
        An index goes with its images that have no name of their own and are in no other index."""
        children = self._index_children([image_id]) if image_id in self._read_index().get("indexes", {}) else set()
        with self._edit_index() as index:
            gone = [t for t, i in index["tags"].items() if i == image_id]
            for t in gone:
                del index["tags"][t]
            index["images"].pop(image_id, None)
            index.get("indexes", {}).pop(image_id, None)
            if children:
                children -= self._index_children(index.get("indexes", {}))
                named = set(index["tags"].values())
                index["images"] = {i: r for i, r in index["images"].items()
                                   if i in named or r["manifest"] not in children}
        return gone

    def _index_children(self, digests: Iterable[str]) -> set[str]:
        """The manifest digests the stored indexes `digests` list."""
        out: set[str] = set()
        for digest in digests:
            with contextlib.suppress(StoreError, ImageFormatError):
                out.update(d.digest for d in Index.from_json(self.read_blob(Digest(digest))).manifests)
        return out

    def tags(self) -> dict[str, Digest]:
        return {t: Digest(i) for t, i in self._read_index()["tags"].items()}

    def images(self) -> list[ImageRecord]:
        """Every image and index, once each; an index's images (untagged) are listed only through it
        (an index's record has its digest as both id and manifest)."""
        index = self._read_index()
        by_id: dict[str, list[str]] = {}
        for t, i in sorted(index["tags"].items()):
            by_id.setdefault(i, []).append(t)
        children = self._index_children(index.get("indexes", {}))
        out = [ImageRecord(Digest(i), Digest(rec["manifest"]), tuple(by_id.get(i, ())), rec.get("added", ""))
               for i, rec in index["images"].items() if i in by_id or rec["manifest"] not in children]
        out += [ImageRecord(Digest(d), Digest(d), tuple(by_id.get(d, ())), rec.get("added", ""))
                for d, rec in index.get("indexes", {}).items()]
        return out

    # ------------------------------------------------------------------ reading images

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
        layers = tuple(BlobLayer(diff, d.digest, d.size, d.media_type, functools.partial(self.open_blob, d.digest),
                                 self.uncompressed_size(diff))
                       for diff, d in zip(config.diff_ids, manifest.layers))
        return BasicImage(raw_config, layers, manifest.media_type, manifest.annotations, raw_manifest)

    def resolve(self, ref: str, platform: Platform | None = None) -> BasicImage:
        """An image by tag (`name[:tag]`), `name@sha256:<manifest>`, or an id / unique id prefix; a name
        of a multi-platform index gives its image for `platform` (default: this machine's), and a
        `platform` a single image is not for is an error naming the platform it has."""
        from builder.oci import platform as platforms

        found = self.index(ref)
        if found is not None:
            want = platform or platforms.host()
            try:
                return self.image_by_manifest(platforms.select(found[1], want).digest)
            except platforms.PlatformError:
                have = ", ".join(str(d.platform) for d in found[1].manifests if d.platform) or "none"
                raise platforms.PlatformError(f"image {ref!r} has no image for platform "
                                              f"{platforms.format_platform(want)} (it has: {have})",
                                              hint="choose one of those with --platform") from None
        image = self._resolve(ref)
        if platform is not None and not platforms.matches(image.config().platform, platform):
            raise platforms.PlatformError(f"image {ref!r} has no image for platform {platform} "
                                          f"(it has: {platforms.format_platform(image.config().platform)})",
                                          hint="build or pull it for that platform")
        return image

    def _resolve(self, ref: str) -> BasicImage:
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
        try:
            return self.image_for_repo_digest(parse_reference(ref))
        except InvalidReferenceError:
            return None

    # ------------------------------------------------------------------ registry bookkeeping

    @contextlib.contextmanager
    def _registry_state(self, write: bool) -> Iterator[dict[str, Any]]:
        path = self.root / "registry.json"
        if not write and not path.exists():  # nothing recorded yet (and a read never creates files)
            yield {"repo_digests": {}, "blob_sources": {}}
            return
        flags = os.O_RDWR | os.O_CREAT if write else os.O_RDONLY | os.O_CREAT
        try:
            lock = os.open(self.root / "registry.lock", flags | os.O_CLOEXEC, 0o644)
        except PermissionError:
            if write:
                raise
            lock = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # a read-only store: lock the file itself
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                state = json.loads(path.read_text())
            except FileNotFoundError:
                state = {}
            except ValueError:
                state = {}  # a damaged hint file only costs uploads; start afresh
            state.setdefault("repo_digests", {})
            state.setdefault("blob_sources", {})
            yield state
            if write:  # hints: losing them costs uploads, never data
                write_atomic(path, json.dumps(state, indent=1, sort_keys=True).encode(), mode=0o600,
                             durable=False, tmp_dir=self.root / "tmp")
        finally:
            os.close(lock)

    def record_registry(self, name: str, blobs: Iterable[str], image_id: str | None = None,
                        repo_digest: str | None = None) -> None:
        """Remember that registry repository `name` (host/repo) holds `blobs` (for cross-repo mounts),
        and, with `image_id`, that the image is there as `repo_digest` (`name@sha256:...`, familiar;
        one per repository, the latest)."""
        with self._registry_state(write=True) as state:
            if image_id and repo_digest:
                digests = state["repo_digests"].setdefault(image_id, [])
                repo = repo_digest.split("@", 1)[0]
                digests[:] = [d for d in digests if d.split("@", 1)[0] != repo] + [repo_digest]
            for blob in blobs:
                sources = state["blob_sources"].setdefault(blob, [])
                if name not in sources:
                    sources[:] = (sources + [name])[-_BLOB_SOURCES_KEPT:]

    def repo_digests(self, image_id: str) -> list[str]:
        """`name@sha256:...` for each repository this image was pulled from or pushed to (familiar names)."""
        with self._registry_state(write=False) as state:
            return list(state["repo_digests"].get(str(image_id), []))

    def blob_sources(self, digests: Iterable[str]) -> dict[str, list[str]]:
        """The registry repositories (host/repo) known to hold each blob, oldest first."""
        with self._registry_state(write=False) as state:
            return {d: list(state["blob_sources"].get(d, [])) for d in digests}

    def image_for_repo_digest(self, ref: Reference, platform: Platform | None = None) -> BasicImage | None:
        """The stored image that a pull or push recorded under `ref` (`name@digest`), if any; with
        `platform`, the one for that platform (a pull of an index records each platform's image
        under the index's digest)."""
        from builder.oci import platform as platforms

        with self._registry_state(write=False) as state:
            want = f"{familiar_name(ref)}@{ref.digest}"
            image_ids = [i for i, ds in state["repo_digests"].items() if want in ds]
        for image_id in image_ids:
            try:
                image = self.resolve(image_id)
            except (StoreError, ImageFormatError):
                continue
            if platform is None or platforms.matches(image.config().platform, platform):
                return image
        return None
