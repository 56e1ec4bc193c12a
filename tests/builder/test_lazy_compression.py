"""Builds keep layers uncompressed; `Store.compressed_image` makes the gzip/zstd copies a push or
an export needs (same image id, another manifest digest), once, verified, deterministic."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from builder.errors import DigestMismatchError, ImageFormatError
from builder.oci import mutate
from builder.oci.image import EMPTY, Image, validate_image
from builder.oci.model import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from builder.store import Store


def _built(root: Path, tmp: Path, compression: str = "uncompressed") -> tuple[Store, Image]:
    """A store with a one-layer image committed from a small directory, as a build commits it."""
    store = Store.open(root)
    src = tmp / "upper"
    (src / "etc").mkdir(parents=True, exist_ok=True)
    (src / "etc" / "hello").write_text("hello\n" * 1000)
    os.utime(src / "etc" / "hello", (1, 1))
    rec = store.commit_dir(src, compression=compression, epoch=0)
    image = mutate.with_created(mutate.append_layers(EMPTY, store.blob_layer(rec)), 0)
    store.put_image(image, ["app:1"])
    return store, store.resolve("app:1")


def test_gzip_copy_keeps_the_image_id_and_unpacks_to_the_diff_id(store_root: Path, tmp_path: Path) -> None:
    store, image = _built(store_root, tmp_path)
    (layer,) = image.layers()
    assert layer.media_type == OCI_LAYER and layer.digest == layer.diff_id
    assert "sha256:" + hashlib.sha256(store.blob_path(layer.digest).read_bytes()).hexdigest() == layer.digest
    packed = store.compressed_image(image)
    validate_image(packed)
    (gz,) = packed.layers()
    assert gz.media_type == OCI_LAYER_GZIP and gz.diff_id == layer.diff_id and gz.digest != layer.digest
    assert packed.id == image.id and packed.digest != image.digest
    blob = store.blob_path(gz.digest).read_bytes()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == gz.digest and len(blob) == gz.size
    assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == layer.diff_id  # Python's own gzip
    assert store.resolve("app:1").digest == image.digest  # the local image is unchanged
    before = sorted(os.listdir(store.root / "blobs" / "sha256"))
    assert store.compressed_image(image).digest == packed.digest  # made once
    assert sorted(os.listdir(store.root / "blobs" / "sha256")) == before
    assert store.compressed_image(image, "zstd").layers()[0].media_type == OCI_LAYER_ZSTD


def test_gzip_copy_is_reproducible_across_stores(tmp_path: Path) -> None:
    a = _built(tmp_path / "a", tmp_path / "ta")
    b = _built(tmp_path / "b", tmp_path / "tb")
    assert a[1].digest == b[1].digest
    assert a[0].compressed_image(a[1]).digest == b[0].compressed_image(b[1]).digest


def test_compressed_image_leaves_compressed_images_alone(store_root: Path, tmp_path: Path) -> None:
    store, image = _built(store_root, tmp_path, compression="gzip")
    assert store.compressed_image(image) is image
    assert store.compressed_image(image, "uncompressed") is image
    with pytest.raises(ImageFormatError):
        store.compressed_image(image, "lzma")


def test_a_corrupt_uncompressed_blob_is_never_compressed(store_root: Path, tmp_path: Path) -> None:
    store, image = _built(store_root, tmp_path)
    (layer,) = image.layers()
    path = store.blob_path(layer.digest)
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    before = sorted(os.listdir(store.root / "blobs" / "sha256"))
    with pytest.raises(DigestMismatchError):
        store.compressed_image(image)
    assert sorted(os.listdir(store.root / "blobs" / "sha256")) == before
    assert not list((store.root / "layers").glob("*.gzip*.json"))
    assert not os.listdir(store.root / "tmp")


def test_prune_drops_the_copies_and_they_are_made_again(store_root: Path, tmp_path: Path) -> None:
    store, image = _built(store_root, tmp_path)
    gz = store.compressed_image(image).layers()[0]
    store.prune()
    assert not store.has_blob(gz.digest) and not list((store.root / "layers").glob("*.gzip*.json"))
    assert store.has_blob(image.layers()[0].digest)  # the tagged local image keeps its own layer
    assert store.compressed_image(store.resolve("app:1")).layers()[0].digest == gz.digest
    assert store.has_blob(gz.digest)
