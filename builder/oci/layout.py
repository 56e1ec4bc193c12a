"""OCI image layouts: write one as a directory or a tarball, read one back.

    oci-layout                {"imageLayoutVersion": "1.0.0"}
    index.json                an image index; each manifest annotated with its name
    blobs/sha256/<hex>        manifests, configs, layers

Tarballs are deterministic (sorted entries, mtime 0, numeric owners), written to a temp file
and renamed into place.
"""

from __future__ import annotations

import functools
import os
import tarfile
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence, Union

from builder.errors import ImageFormatError
from builder.oci.image import BasicImage, BlobLayer, Image, index_of
from builder.oci.layer.encode import TarWriter
from builder.oci.layer.entry import DIR, REG, Header
from builder.oci.model import (DOCKER_MANIFEST, INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, Descriptor,
                               Digest, ImageConfig, Index, Manifest, Platform)
from builder.oci.platform import PlatformError, host, select
from builder.util.atomic import atomic_file

__all__ = ["write_oci_layout", "write_oci_archive", "write_oci_index_archive", "read_oci_layout", "Output",
           "DirOutput", "TarOutput", "Tagged", "REF_NAME", "CONTAINERD_NAME", "as_entries", "LayoutSource", "write_tar_atomically",
           "write_image_blobs", "as_oci", "check_size"]

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
CHUNK = 1 << 20

Tagged = tuple[Image, Sequence[str]]
Opener = Callable[[], IO[bytes]]


def as_entries(images: Union[Image, Sequence[Tagged]], tags: Sequence[str] = ()) -> list[Tagged]:
    """Normalise `image` or `[(image, tags), ...]` to the list form."""
    if isinstance(images, (list, tuple)):
        return [(img, list(t)) for img, t in images]
    return [(images, list(tags))]  # type: ignore[list-item]


class Output:
    """Where a layout or archive is written: named files of known size."""

    def add(self, name: str, size: int, opener: Opener) -> None:
        raise NotImplementedError

    def add_bytes(self, name: str, data: bytes) -> None:
        import io

        self.add(name, len(data), lambda: io.BytesIO(data))

    def has(self, name: str) -> bool:
        raise NotImplementedError


class DirOutput(Output):
    """Files in a directory (each written to a temp name, then renamed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    def add(self, name: str, size: int, opener: Opener) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, durable=False) as out, opener() as src:
            written = 0
            while data := src.read(CHUNK):
                out.write(data)
                written += len(data)
            if written != size:
                raise ImageFormatError(f"{name}: expected {size} bytes, got {written}")


class TarOutput(Output):
    """Entries of a deterministic tar stream written to `f`."""

    def __init__(self, f: IO[bytes]) -> None:
        self._w = TarWriter(f.write)
        self._names: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self._names

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._names:
                self._names.add(d)
                self._w.add(Header(d, DIR, 0o755))

    def add(self, name: str, size: int, opener: Opener) -> None:
        self._dirs(name)
        self._names.add(name)
        with opener() as src:
            got = [0]

            def read(n: int) -> bytes:
                data = src.read(n)
                got[0] += len(data)
                return data

            self._w.add(Header(name, REG, 0o644, size=size), read)
            if got[0] != size or src.read(1):
                raise ImageFormatError(f"{name}: content is not {size} bytes long")

    def close(self) -> None:
        self._w.close()


def _blob_name(digest: str) -> str:
    d = Digest(digest)
    return f"blobs/{d.algorithm}/{d.hex}"


def as_oci(image: Image) -> Image:
    """`image` with an OCI manifest: a Docker schema 2 image (pulled as such) gets its manifest
    rewritten with OCI media types, as `skopeo copy` to an OCI layout does. The config and the
    layer blobs stay byte for byte (same image id); the manifest digest changes."""
    manifest = image.manifest()
    if manifest.media_type != DOCKER_MANIFEST:
        return image
    return BasicImage(image.raw_config(), tuple(image.layers()), OCI_MANIFEST, manifest.annotations)


def write_image_blobs(out: Output, image: Image) -> Descriptor:
    """Write an image's layers, config and manifest; return the manifest descriptor."""
    import io

    for layer in image.layers():
        name = _blob_name(layer.digest)
        if not out.has(name):
            out.add(name, layer.size, layer.open_compressed)
    cname = _blob_name(image.id)
    if not out.has(cname):
        out.add_bytes(cname, image.raw_config())
    raw = image.raw_manifest()
    mname = _blob_name(Digest.of(raw))
    if not out.has(mname):
        out.add(mname, len(raw), lambda: io.BytesIO(raw))
    return Descriptor(image.manifest().media_type, Digest.of(raw), len(raw))


def _index(entries: Iterable[tuple[Descriptor, Sequence[str]]]) -> bytes:
    manifests = []
    for desc, tags in entries:
        if not tags:
            manifests.append(desc)
        for tag in tags:
            manifests.append(Descriptor(desc.media_type, desc.digest, desc.size,
                                        annotations={REF_NAME: tag, CONTAINERD_NAME: tag}))
    return Index(tuple(manifests), OCI_INDEX).to_json()


def _write_layout(out: Output, entries: list[Tagged]) -> None:
    out.add_bytes("oci-layout", OCI_LAYOUT)
    descs = [(write_image_blobs(out, as_oci(img)), tags) for img, tags in entries]
    out.add_bytes("index.json", _index(descs))


def write_oci_layout(images: Union[Image, Sequence[Tagged]], dest: str | os.PathLike[str],
                     tags: Sequence[str] = ()) -> None:
    """Write (or add to) an OCI image layout directory at `dest`."""
    out = DirOutput(Path(dest))
    entries = as_entries(images, tags)
    old: list[Descriptor] = []
    if (Path(dest) / "index.json").exists():  # keep what is already in the layout
        old = list(Index.from_json((Path(dest) / "index.json").read_bytes()).manifests)
    out.add_bytes("oci-layout", OCI_LAYOUT)
    new = [(write_image_blobs(out, as_oci(img)), t) for img, t in entries]
    new_names = {t for _, ts in new for t in ts}
    kept = [(d, [d.annotations[REF_NAME]] if d.annotations and REF_NAME in d.annotations else [])
            for d in old if not (d.annotations and d.annotations.get(REF_NAME) in new_names)]
    out.add_bytes("index.json", _index(kept + new))


def write_tar_atomically(dest: str | os.PathLike[str] | IO[bytes], fill: Callable[[TarOutput], None],
                         what: str = "the image archive") -> None:
    """Write a tar with `fill` to a file path (temp + rename) or to an open binary stream."""
    if not isinstance(dest, (str, os.PathLike)):
        out = TarOutput(dest)
        fill(out)
        out.close()
        return
    with atomic_file(dest, what=what) as f:
        out = TarOutput(f)
        fill(out)
        out.close()


def write_oci_index_archive(images: Sequence[Image], dest: str | os.PathLike[str] | IO[bytes],
                            tags: Sequence[str] = ()) -> Digest:
    """Write a multi-platform image as an OCI layout tarball: every image's blobs, their index as a
    blob, and `index.json` naming that index (once per tag), as BuildKit's oci exporter does.
    Returns the index digest."""
    oci = [as_oci(img) for img in images]
    raw = index_of(oci).to_json()
    desc = Descriptor(OCI_INDEX, Digest.of(raw), len(raw))

    def fill(out: TarOutput) -> None:
        out.add_bytes("oci-layout", OCI_LAYOUT)
        for img in oci:
            write_image_blobs(out, img)
        out.add_bytes(_blob_name(desc.digest), raw)
        out.add_bytes("index.json", _index([(desc, list(tags))]))

    write_tar_atomically(dest, fill)
    return desc.digest


def write_oci_archive(images: Union[Image, Sequence[Tagged]], dest: str | os.PathLike[str] | IO[bytes],
                      tags: Sequence[str] = ()) -> None:
    """Write an OCI image layout as a tarball (`oci-archive:` for skopeo, `podman load`)."""
    entries = as_entries(images, tags)
    write_tar_atomically(dest, lambda out: _write_layout(out, entries))


# ---------------------------------------------------------------------------- reading


class LayoutSource:
    """Named files of a layout or archive: a directory, or a tar file read by member."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.path = path
        self.label = label or str(path)  # what messages call it (the user's file, not a spooled copy)
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if not path.is_dir():
            try:
                self._tar = tarfile.open(path, "r:")
                members = self._tar.getmembers()  # reads every header: a truncated archive fails here
            except (tarfile.TarError, OSError) as exc:
                if self._tar is not None:
                    self._tar.close()
                raise ImageFormatError(f"{self.label}: not an image archive, or truncated: {exc}") from None
            for m in members:
                if m.isfile():
                    self._members[os.path.normpath(m.name.lstrip("/")).lstrip("./") or m.name] = m

    def has(self, name: str) -> bool:
        return name in self._members if self._tar else (self.path / name).is_file()

    def open(self, name: str) -> IO[bytes]:
        if self._tar is None:
            p = self.path / name
            if name.startswith("/") or ".." in name.split("/") or not p.resolve().is_relative_to(self.path.resolve()):
                raise ImageFormatError(f"{self.label}: {name!r} points outside the layout")
            if p.is_symlink() or not p.is_file():
                raise ImageFormatError(f"{self.label}: missing {name}")
            return open(p, "rb")
        m = self._members.get(name)
        if m is None:
            raise ImageFormatError(f"{self.label}: missing {name}")
        f = self._tar.extractfile(m)
        assert f is not None
        return f

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageFormatError(f"{self.label}: {name} is implausibly large")
        return data

    def size(self, name: str) -> int:
        """The size of member `name` (ImageFormatError when missing)."""
        if self._tar is None:
            with self.open(name) as f:
                return os.fstat(f.fileno()).st_size
        m = self._members.get(name)
        if m is None:
            raise ImageFormatError(f"{self.label}: missing {name}")
        return m.size

    def read_blob(self, desc: Descriptor) -> bytes:
        """A small blob (manifest, index, config), checked against its descriptor's size and digest."""
        check_size(self.label, desc, self.size(_blob_name(desc.digest)))
        data = self.read(_blob_name(desc.digest))
        if Digest.of(data) != desc.digest:
            raise ImageFormatError(f"{self.label}: blob {desc.digest} is corrupt (hash mismatch)")
        return data

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def check_size(label: str, desc: Descriptor, actual: int) -> None:
    """A descriptor's size must be the blob's: a false size is refused, as containerd does."""
    if actual != desc.size:
        raise ImageFormatError(f"{label}: blob {desc.digest} is {actual} bytes, its descriptor says {desc.size}")


def _image_from(src: LayoutSource, desc: Descriptor) -> BasicImage:
    raw_manifest = src.read_blob(desc)
    manifest = Manifest.from_json(raw_manifest)
    raw_config = src.read_blob(manifest.config)
    config = ImageConfig.from_json(raw_config)
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageFormatError(f"{src.label}: image {desc.digest}: {len(manifest.layers)} layers but "
                               f"{len(config.diff_ids)} diff_ids")
    for d in manifest.layers:
        check_size(src.label, d, src.size(_blob_name(d.digest)))
    layers = tuple(BlobLayer(diff, d.digest, d.size, d.media_type, functools.partial(src.open, _blob_name(d.digest)))
                   for diff, d in zip(config.diff_ids, manifest.layers))
    return BasicImage(raw_config, layers, manifest.media_type, manifest.annotations, raw_manifest)


def _name_of(desc: Descriptor) -> list[str]:
    ann = desc.annotations or {}
    for key in (CONTAINERD_NAME, REF_NAME):
        name = ann.get(key, "")
        if name and (":" in name or "/" in name):
            return [name]
    return []


def _select(src: LayoutSource, index: Index, digest: str, platform: Platform | None) -> Descriptor:
    """The manifest of a nested (multi-platform) index for `platform` (default: this machine's),
    by the rules `pull --platform` uses; an index without one is an error, never another platform."""
    choices = Index(tuple(m for m in index.manifests if m.media_type in MANIFEST_TYPES))
    if not choices.manifests:
        raise ImageFormatError(f"{src.label}: index {digest} lists no image manifests")
    if len(choices.manifests) == 1 and choices.manifests[0].platform is None:
        return choices.manifests[0]
    try:
        return select(choices, platform or host())
    except PlatformError as exc:
        raise ImageFormatError(f"{src.label}: {exc.message}", hint=exc.hint) from None


def read_oci_layout(src: LayoutSource, platform: Platform | None = None) -> list[tuple[BasicImage, list[str]]]:
    """Images in an OCI layout (directory or tar), with the names their index gives them.

    A nested index (multi-platform) contributes its manifest for `platform` (default: the host's).
    """
    if not src.has("index.json"):
        raise ImageFormatError(f"{src.label}: not an OCI layout (no index.json)")
    index = Index.from_json(src.read("index.json"))
    out: list[tuple[BasicImage, list[str]]] = []
    by_digest: dict[str, int] = {}
    for desc in index.manifests:
        target = desc
        if desc.media_type in INDEX_TYPES:
            target = _select(src, Index.from_json(src.read_blob(desc)), desc.digest, platform)
        elif desc.media_type not in MANIFEST_TYPES and desc.media_type:
            raise ImageFormatError(f"{src.label}: unsupported media type {desc.media_type!r} in index.json")
        names = _name_of(desc)
        if target.digest in by_digest:
            out[by_digest[target.digest]][1].extend(names)
            continue
        by_digest[target.digest] = len(out)
        out.append((_image_from(src, target), names))
    return out

