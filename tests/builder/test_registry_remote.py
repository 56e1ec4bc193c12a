"""builder/registry/remote.py: images in a registry without the store (write an Image, read it back)."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from builder.errors import DigestMismatchError
from builder.oci import mutate
from builder.oci.image import EMPTY, BasicImage, BlobLayer
from builder.oci.model import OCI_LAYER, Descriptor, Digest, History
from builder.oci.reference import parse_reference
from builder.registry import remote
from builder.registry.client import client_for
from builder.registry.transport import RegistryOptions
from tests.builder.registry_server import Registry, needs_registry

pytestmark = needs_registry
FAST = RegistryOptions(backoff=0.01, max_backoff=0.05, retries=3)


def _memory_image() -> BasicImage:
    """One uncompressed layer held in memory: nothing here touches a store."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = os.urandom(20_000)
        info = tarfile.TarInfo("data.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    layer = BlobLayer(Digest.of(blob), Digest.of(blob), len(blob), OCI_LAYER, lambda: io.BytesIO(blob))
    return mutate.append_layers(EMPTY, layer, history=[History(created_by="test")])  # type: ignore[return-value]


def test_write_then_read_back(registry: Registry) -> None:
    image = _memory_image()
    ref = parse_reference(f"{registry.host}/remote/{uuid.uuid4().hex[:8]}:1")
    first = remote.write(ref, image, FAST)
    assert first.digest == image.digest and first.uploaded > 0 and first.blobs[0] == image.id
    again = remote.write(ref, image, FAST)
    assert (again.uploaded, again.skipped) == (0, 2)
    other = parse_reference(f"{registry.host}/remote/{uuid.uuid4().hex[:8]}:1")
    mounted = remote.write(other, image, FAST, mount_from={d: [ref.name] for d in first.blobs})
    assert mounted.mounted == 2 and mounted.uploaded == 0

    got = remote.image(ref, FAST)
    assert got.id == image.id and got.digest == image.digest and not got.from_index
    assert got.raw_manifest() == image.raw_manifest()
    [layer] = got.layers()
    with layer.open_compressed() as f:
        assert f.read() == image.layers()[0].open_compressed().read()


def test_a_streamed_blob_with_the_wrong_content_fails_at_its_end(registry: Registry) -> None:
    image = _memory_image()
    ref = parse_reference(f"{registry.host}/remote/{uuid.uuid4().hex[:8]}:1")
    remote.write(ref, image, FAST)
    layer = image.layers()[0]
    lie = Descriptor(layer.media_type, layer.digest, layer.size + 1)  # the registry sends one byte less
    with pytest.raises(DigestMismatchError), client_for(ref.registry, FAST).open_blob(ref.repository, lie) as f:
        f.read()
