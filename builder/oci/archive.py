"""Image tarballs: docker-archive (`docker save` / `docker load`) and loading of both formats.

A docker-archive we write is also an OCI layout (as Docker 25+ writes them):

    manifest.json             [{"Config": "blobs/sha256/<id>", "RepoTags": [...], "Layers": [...]}]
    blobs/sha256/<diff_id>    each layer as an uncompressed tar (so its name is its diff_id)
    blobs/sha256/<id>         the config;  index.json + oci-layout + a manifest for the OCI view

`open_archive` and `read_docker_archive` read either format (loading into a store, verifying every
digest on the way, is builder/transfer.py's `load`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence, Union

from builder.errors import ImageFormatError, StoreError
from builder.oci.compress import decompressing_reader, detect
from builder.oci.image import BasicImage, Image, Layer
from builder.oci.layout import OCI_LAYOUT, LayoutSource, Output, Tagged, _blob_name, _index, as_entries, write_tar_atomically
from builder.oci.model import OCI_LAYER, OCI_MANIFEST, Descriptor, Digest, Manifest, loads_json
from builder.util.atomic import atomic_file
from builder.util.streams import Prefixed

__all__ = ["write_docker_archive", "open_archive", "read_docker_archive", "uncompressed_size",
           "export_rootfs_dir", "export_rootfs_tar"]

CHUNK = 1 << 20


def uncompressed_size(layer: Layer) -> int:
    """The size of a layer's tar (known from the store, or measured by one decompressing pass)."""
    known = getattr(layer, "uncompressed_size", 0)
    if known:
        return known
    n = 0
    with layer.open_uncompressed() as f:
        while data := f.read(CHUNK):
            n += len(data)
    return n


def _write(out: Output, entries: list[Tagged]) -> None:
    out.add_bytes("oci-layout", OCI_LAYOUT)
    docker_manifest = []
    oci = []
    for image, tags in entries:
        layer_names = []
        layer_descs = []
        for layer in image.layers():
            name = _blob_name(layer.diff_id)
            size = uncompressed_size(layer)
            if not out.has(name):
                out.add(name, size, layer.open_uncompressed)
            layer_names.append(name)
            layer_descs.append(Descriptor(OCI_LAYER, layer.diff_id, size))
        config_name = _blob_name(image.id)
        if not out.has(config_name):
            out.add_bytes(config_name, image.raw_config())
        docker_manifest.append({"Config": config_name, "RepoTags": list(tags), "Layers": layer_names})
        manifest = Manifest(image.manifest().config, tuple(layer_descs), OCI_MANIFEST).to_json()
        desc = Descriptor(OCI_MANIFEST, Digest.of(manifest), len(manifest))
        if not out.has(_blob_name(desc.digest)):
            out.add_bytes(_blob_name(desc.digest), manifest)
        oci.append((desc, tags))
    out.add_bytes("index.json", _index(oci))
    out.add_bytes("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())


def write_docker_archive(images: Union[Image, Sequence[Tagged]], dest: str | os.PathLike[str] | IO[bytes],
                         tags: Sequence[str] = ()) -> None:
    """Write a `docker load`-compatible archive of images with their tags (also an OCI layout)."""
    entries = as_entries(images, tags)
    write_tar_atomically(dest, lambda out: _write(out, entries))


def _spool(stream: IO[bytes], tmp_dir: Path, label: str) -> Path:
    """Copy a (possibly compressed) archive stream to an uncompressed temp file."""
    try:
        return _spool_to(stream, tmp_dir)
    except ImageFormatError as exc:
        raise ImageFormatError(f"{label}: {exc.message}", hint=exc.hint) from None


def _spool_to(stream: IO[bytes], tmp_dir: Path) -> Path:
    head = stream.read(4)
    reader = decompressing_reader(Prefixed(head, stream), detect(head))  # type: ignore[arg-type]
    fd, name = tempfile.mkstemp(prefix=f"load-{os.getpid()}-", suffix=".tar", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            while data := reader.read(CHUNK):
                out.write(data)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def read_docker_archive(src: LayoutSource) -> list[tuple[BasicImage, list[str], list[str]]]:
    """(config-only image, tags, layer member names) per manifest.json entry."""
    try:
        entries = loads_json(src.read("manifest.json"), f"{src.label}: manifest.json")
        assert isinstance(entries, list)
    except AssertionError:
        raise ImageFormatError(f"{src.label}: manifest.json is not a list of images") from None
    out = []
    for e in entries:
        if (not isinstance(e, dict) or not isinstance(e.get("Config"), str) or not isinstance(e.get("Layers"), list)
                or not all(isinstance(name, str) for name in e["Layers"])
                or not all(isinstance(tag, str) for tag in e.get("RepoTags") or [])):
            raise ImageFormatError(f"{src.label}: malformed manifest.json entry {e!r}")
        raw_config = src.read(os.path.normpath(e["Config"]))
        out.append((BasicImage(raw_config), list(e.get("RepoTags") or []), [os.path.normpath(l) for l in e["Layers"]]))
    return out


@contextlib.contextmanager
def open_archive(source: str | os.PathLike[str] | IO[bytes], tmp_dir: Path) -> Iterator[LayoutSource]:
    """A docker-archive or OCI layout (a tar, a compressed tar, a directory, or a stream) to read;
    a stream or a compressed file is first spooled, uncompressed, into `tmp_dir` (removed after)."""
    spooled: Path | None = None
    label = str(source) if isinstance(source, (str, os.PathLike)) else "stdin"
    try:
        if not isinstance(source, (str, os.PathLike)):
            path = spooled = _spool(source, tmp_dir, label)
        else:
            path = Path(source)
            if not path.exists():
                raise ImageFormatError(f"{path}: no such file")
            if path.is_file():
                with open(path, "rb") as f:
                    if detect(f.read(4)) != "uncompressed":
                        f.seek(0)
                        path = spooled = _spool(f, tmp_dir, label)
        src = LayoutSource(path, label)
        try:
            yield src
        finally:
            src.close()
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- rootfs exports


def export_rootfs_dir(image: Image, dest: str | os.PathLike[str]) -> None:
    """Flatten an image's layers into the directory `dest` (`--output type=local`), confined to it."""
    from builder.oci.layer.unpack import extract

    path = Path(dest)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"cannot write {path}: it is not a directory") from None
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None
    path = path.resolve()  # dest itself may be a symlink to a directory (the user's choice); entries stay confined
    for layer in image.layers():
        with layer.open_uncompressed() as f:
            extract(f, path, overlay=False)


def export_rootfs_tar(image: Image | Mapping[str, Image], dest: str | os.PathLike[str] | IO[bytes],
                      tmp_dir: str | os.PathLike[str], epoch: int | None = None) -> None:
    """The flattened root filesystem as one deterministic tar (`--output type=tar`); of several images
    ({directory: image}, a multi-platform build's `linux_amd64`...), each under its directory."""
    import shutil

    from builder.oci.layer.write import write_dir

    work = Path(tempfile.mkdtemp(prefix=f"rootfs-{os.getpid()}-", dir=tmp_dir))
    try:
        if isinstance(image, Mapping):
            for name, img in image.items():
                export_rootfs_dir(img, work / name)
        else:
            export_rootfs_dir(image, work)
        if not isinstance(dest, (str, os.PathLike)):
            write_dir(work, dest.write, epoch=epoch)
            return
        with atomic_file(dest, what="the root filesystem tar") as f:
            write_dir(work, f.write, epoch=epoch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_read_docker_archive = read_docker_archive  # the old private name (builder/analyze/source.py uses it)
