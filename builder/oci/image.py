"""Read-only `Image` and `Layer` views, and the one concrete image every medium produces.

An image is its raw config bytes plus ordered layers; the manifest is derived from them
(or kept verbatim when an image was read from a registry or a layout, so its digest stays).
The image id is the config digest, as in Docker. `EMPTY` is `FROM scratch`.
Layers keep `diff_id` (sha256 of the uncompressed tar) apart from `digest` (the blob).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Callable, Mapping, Protocol, Sequence, runtime_checkable

from builder.errors import ImageFormatError
from builder.oci.compress import codec_of, decompressing_reader
from builder.oci.model import (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP,
                               OCI_INDEX, OCI_MANIFEST, Descriptor, Digest, ImageConfig, Index, Manifest)

__all__ = ["Layer", "Image", "BlobLayer", "BasicImage", "EMPTY", "validate_image", "index_of"]


@runtime_checkable
class Layer(Protocol):
    """One layer: a compressed blob (`digest`) whose uncompressed tar hashes to `diff_id`."""

    @property
    def diff_id(self) -> Digest: ...
    @property
    def digest(self) -> Digest: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str: ...
    def open_compressed(self) -> IO[bytes]: ...
    def open_uncompressed(self, limit: int | None = None) -> IO[bytes]: ...


@runtime_checkable
class Image(Protocol):
    """A read-only image: raw config and manifest bytes, parsed views, and layers."""

    @property
    def id(self) -> Digest: ...
    @property
    def digest(self) -> Digest: ...
    def raw_config(self) -> bytes: ...
    def config(self) -> ImageConfig: ...
    def raw_manifest(self) -> bytes: ...
    def manifest(self) -> Manifest: ...
    def layers(self) -> Sequence[Layer]: ...


@dataclass(frozen=True)
class BlobLayer:
    """A layer whose compressed blob comes from `opener()` (a store, a layout, an archive)."""

    diff_id: Digest
    digest: Digest
    size: int
    media_type: str
    opener: Callable[[], IO[bytes]] = field(compare=False, repr=False)
    uncompressed_size: int = field(default=0, compare=False)  # 0 = unknown

    def open_compressed(self) -> IO[bytes]:
        return self.opener()

    def open_uncompressed(self, limit: int | None = None) -> IO[bytes]:
        return decompressing_reader(self.opener(), codec_of(self.media_type), limit)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


@dataclass(frozen=True)
class BasicImage:
    """The concrete image: config bytes, layers, and the manifest flavour (OCI or Docker).

    `manifest_bytes` is kept verbatim when given (images read from elsewhere); otherwise
    the manifest is generated canonically from the config and layers.
    """

    config_bytes: bytes
    layer_list: tuple[Layer, ...] = ()
    manifest_media_type: str = OCI_MANIFEST
    annotations: Mapping[str, str] | None = None
    manifest_bytes: bytes | None = field(default=None, compare=False)

    @property
    def id(self) -> Digest:
        return Digest.of(self.config_bytes)

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw_manifest())

    def raw_config(self) -> bytes:
        return self.config_bytes

    def config(self) -> ImageConfig:
        return ImageConfig.from_json(self.config_bytes)

    def layers(self) -> Sequence[Layer]:
        return self.layer_list

    def manifest(self) -> Manifest:
        if self.manifest_bytes is not None:
            return Manifest.from_json(self.manifest_bytes)
        docker = self.manifest_media_type == DOCKER_MANIFEST
        config = Descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, self.id, len(self.config_bytes))
        layers = tuple(Descriptor(_layer_type(l.media_type, docker), l.digest, l.size) for l in self.layer_list)
        return Manifest(config, layers, self.manifest_media_type, self.annotations or None)

    def raw_manifest(self) -> bytes:
        return self.manifest_bytes if self.manifest_bytes is not None else self.manifest().to_json()


def _layer_type(media_type: str, docker: bool) -> str:
    if docker and media_type == OCI_LAYER_GZIP:
        return DOCKER_LAYER
    if not docker and media_type == DOCKER_LAYER:
        return OCI_LAYER_GZIP
    return media_type


EMPTY: Image = BasicImage(ImageConfig().to_json())
"""The empty image (`FROM scratch`): no layers, a default linux/amd64 config, no `created`."""


def validate_image(image: Image) -> None:
    """Check that manifest, config and layers agree; raise ImageFormatError if not."""
    manifest = image.manifest()
    config = image.config()
    layers = image.layers()
    if manifest.config.digest != image.id or manifest.config.size != len(image.raw_config()):
        raise ImageFormatError("manifest config descriptor does not match the config")
    if len(manifest.layers) != len(layers) or len(config.diff_ids) != len(layers):
        raise ImageFormatError(f"image has {len(layers)} layers but the manifest lists {len(manifest.layers)} "
                               f"and the config {len(config.diff_ids)} diff_ids")
    for desc, layer, diff_id in zip(manifest.layers, layers, config.diff_ids):
        if desc.digest != layer.digest or desc.size != layer.size or diff_id != layer.diff_id:
            raise ImageFormatError(f"layer {layer.digest} does not match its manifest entry or diff_id")
    non_empty = sum(1 for h in config.history if not h.empty_layer)
    if config.history and non_empty != len(layers):
        raise ImageFormatError(f"history has {non_empty} non-empty entries for {len(layers)} layers")


def index_of(images: Sequence[Image]) -> Index:
    """The OCI image index of a multi-platform image: one manifest descriptor per image, with the
    platform its config names, in the order given."""
    descs = []
    for img in images:
        raw = img.raw_manifest()
        descs.append(Descriptor(img.manifest().media_type, Digest.of(raw), len(raw), platform=img.config().platform))
    return Index(tuple(descs), OCI_INDEX)
