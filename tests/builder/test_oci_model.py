"""The OCI model, image views and mutations."""

from __future__ import annotations

import importlib
import json

import pytest

from builder.errors import ImageFormatError
from builder.oci import mutate
from builder.oci.image import EMPTY, BlobLayer, validate_image
from builder.oci.model import (DOCKER_MANIFEST, OCI_LAYER_GZIP, ContainerConfig, Descriptor, Digest, Healthcheck,
                               History, ImageConfig, Index, Manifest, chain_ids)

MODULES = ["builder.oci.model", "builder.oci.image", "builder.oci.mutate", "builder.oci.compress",
           "builder.oci.layer.entry", "builder.oci.layer.whiteout", "builder.oci.layer.encode",
           "builder.oci.layer.decode", "builder.oci.layer.write", "builder.oci.layer.unpack",
           "builder.oci.layer.filepool", "builder.oci.layout", "builder.oci.archive", "builder.store"]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_existing_public_names(name: str) -> None:
    module = importlib.import_module(name)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr}"
    defined = {n for n, v in vars(module).items()
               if not n.startswith("_") and getattr(v, "__module__", None) == name and callable(v)}
    assert defined <= set(module.__all__), f"public but not in __all__: {defined - set(module.__all__)}"


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "", 5])
def test_digest_is_validated(bad: object) -> None:
    with pytest.raises(ImageFormatError):
        Digest(bad)  # type: ignore[arg-type]


def test_digest_parts() -> None:
    d = Digest.of(b"")
    assert d == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert (d.algorithm, d.short) == ("sha256", "e3b0c44298fc")


def test_chain_ids_follow_the_spec() -> None:
    a, b = Digest.of(b"a"), Digest.of(b"b")
    assert chain_ids([a, b]) == [a, Digest.of(f"{a} {b}".encode())]


def test_image_config_round_trip_keeps_docker_fields() -> None:
    raw = {
        "architecture": "arm64", "os": "linux", "variant": "v8", "created": "2024-01-01T00:00:00Z",
        "config": {"User": "app", "Env": ["A=1"], "Entrypoint": ["/init"], "Cmd": [], "WorkingDir": "/srv",
                   "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "Labels": {"k": "v"},
                   "StopSignal": "SIGQUIT", "Shell": ["/bin/bash", "-c"], "OnBuild": ["RUN x"],
                   "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3}},
        "rootfs": {"type": "layers", "diff_ids": [Digest.of(b"x")]},
        "history": [{"created_by": "RUN x"}, {"created_by": "ENV A=1", "empty_layer": True}],
        "container_config": {"Hostname": "kept"},
    }
    config = ImageConfig.from_json(json.dumps(raw))
    assert config.config.healthcheck == Healthcheck(("CMD", "true"), interval=30000000000, retries=3)
    assert config.config.cmd == () and config.config.shell == ("/bin/bash", "-c")
    assert json.loads(config.to_json()) == raw


@pytest.mark.parametrize("doc", ['[]', '{"schemaVersion": 1}', '{"schemaVersion": 2, "config": {}, "layers": []}',
                                 'not json'])
def test_malformed_manifests_are_clear_errors(doc: str) -> None:
    with pytest.raises(ImageFormatError):
        Manifest.from_json(doc)


def test_manifest_and_index_round_trip() -> None:
    d = Descriptor(OCI_LAYER_GZIP, Digest.of(b"l"), 1, annotations={"a": "b"})
    m = Manifest(Descriptor("application/vnd.oci.image.config.v1+json", Digest.of(b"c"), 2), (d,))
    assert Manifest.from_json(m.to_json()) == m
    i = Index((Descriptor(m.media_type, Digest.of(m.to_json()), len(m.to_json())),))
    assert Index.from_json(i.to_json()) == i


def _layer(name: bytes) -> BlobLayer:
    return BlobLayer(Digest.of(name + b"-diff"), Digest.of(name), len(name), OCI_LAYER_GZIP, lambda: None)  # type: ignore


def test_mutations_return_new_valid_images(monkeypatch: pytest.MonkeyPatch) -> None:
    one = mutate.append_layers(EMPTY, _layer(b"a"), history=[History(created_by="RUN a")])
    two = mutate.append_layers(one, _layer(b"b"))
    cfg = mutate.with_config(two, ContainerConfig(cmd=("sh",)), history=History(created_by="CMD sh"))
    for img in (one, two, cfg):
        validate_image(img)
    assert EMPTY.layers() == () and EMPTY.config().diff_ids == ()
    assert [l.digest for l in cfg.layers()] == [Digest.of(b"a"), Digest.of(b"b")]
    assert cfg.config().history[-1].empty_layer and cfg.config().config.cmd == ("sh",)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = mutate.with_created(cfg)
    assert dated.config().created == "2023-11-14T22:13:20Z"
    assert {h.created for h in dated.config().history} == {"2023-11-14T22:13:20Z"}
    assert mutate.with_created(cfg).id == dated.id  # reproducible
    docker = mutate.append_layers(type(EMPTY)(EMPTY.raw_config(), (), DOCKER_MANIFEST), _layer(b"c"))
    assert docker.manifest().layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_validate_image_catches_disagreement() -> None:
    img = mutate.append_layers(EMPTY, _layer(b"a"))
    broken = type(img)(EMPTY.raw_config(), img.layers())
    with pytest.raises(ImageFormatError):
        validate_image(broken)


def test_bad_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ImageFormatError):
        mutate.with_created(EMPTY)


@pytest.mark.parametrize("layer", [None, 3, "sha256:x", ["a"]])
def test_a_descriptor_that_is_not_an_object_is_a_format_error(layer: object) -> None:
    """Found by the fuzz: `"layers": [null]` in a layout's manifest was a TypeError (exit 70)."""
    import json

    from builder.errors import ImageFormatError
    from builder.oci.model import Manifest

    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64,
                      "size": 2}, "layers": [layer]}
    with pytest.raises(ImageFormatError, match="not a JSON object"):
        Manifest.from_json(json.dumps(doc))
