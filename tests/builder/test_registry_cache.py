"""The build cache through a registry and through a directory: a fresh store gets hits, runs nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from builder.cache.keys import BuildCache
from builder.errors import BuildError, ImageFormatError
from builder.cache.export import CacheSpec, export_cache, import_cache, parse_cache_spec
from builder.registry.transport import RegistryOptions
from builder.store import Store
from tests.builder.registry_server import Registry, needs_registry
from tests.builder.store_helpers import clone_store
from tests.conftest import pybuild, requires_root

FAST = RegistryOptions(backoff=0.01, max_backoff=0.05, retries=2)

DOCKERFILE = """\
FROM busybox
RUN echo one > /one && echo "ran-step-$((1+1))"
COPY f /f
RUN cat /f /one > /both && echo "ran-step-$((2+2))"
"""


@pytest.mark.parametrize("text,expected", [
    ("type=registry,ref=127.0.0.1:5000/c:1,mode=max", CacheSpec("registry", ref="127.0.0.1:5000/c:1", mode="max")),
    ("127.0.0.1:5000/c:1", CacheSpec("registry", ref="127.0.0.1:5000/c:1")),
    ("type=local,dest=/tmp/c", CacheSpec("local", path="/tmp/c")),
    ("type=local,dest=/tmp/c,compression=zstd,compression-level=3",
     CacheSpec("local", path="/tmp/c", compression="zstd", level=3)),
])
def test_parse_cache_to(text: str, expected: CacheSpec) -> None:
    assert parse_cache_spec(text, export=True) == expected


@pytest.mark.parametrize("text,message", [
    ("type=registry", "needs ref="), ("type=local,src=/x", "needs dest="), ("type=s3,ref=x", "must be registry or local"),
    ("type=registry,ref=x,mode=all", "mode must be min or max"), ("type=registry,ref=Bad", "lowercase"),
    ("type=registry,ref=x,color=red", "unknown option"),
    ("type=registry,ref=x,compression=lz4", "compression must be"),
    ("type=registry,ref=x,compression-level=high", "compression-level must be a number"),
])
def test_parse_cache_spec_errors(text: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        parse_cache_spec(text, export=True)


def _assert_layers_compressed(layout: Path, codec: str, magic: bytes) -> None:
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / json.loads((layout / "index.json").read_text())["manifests"][0]["digest"][7:]).read_bytes())
    assert manifest["layers"]
    for desc in manifest["layers"]:
        assert desc["mediaType"] == f"application/vnd.oci.image.layer.v1.tar+{codec}"
        assert (blobs / desc["digest"][7:]).read_bytes()[:4].startswith(magic)


def _build(root: Path, ctx: Path) -> str:
    return pybuild("build", "-t", "cached:1", "--progress", "plain", str(ctx), env={"PYBUILD_ROOT": str(root)}).stderr


@requires_root
@needs_registry
def test_cache_shared_through_registry_and_directory(busybox_store: Path, busybox_store_template: Path,
                                                     registry: Registry, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "f").write_text(uuid.uuid4().hex)  # unique per run: no other store can have these keys
    first = _build(busybox_store, ctx)
    assert "ran-step-2" in first and "ran-step-4" in first
    store = Store.open(busybox_store)
    keys = [e.key for e in BuildCache(busybox_store).entries()]
    assert len(keys) == 3

    ref = f"{registry.host}/cache/{uuid.uuid4().hex[:8]}:buildcache"
    digest = export_cache(store, BuildCache(busybox_store), keys, parse_cache_spec(f"type=registry,ref={ref}", export=True), FAST)
    assert digest.startswith("sha256:")
    local_dir = tmp_path / "cache-dir"
    export_cache(store, BuildCache(busybox_store), keys, parse_cache_spec(f"type=local,dest={local_dir}", export=True))
    assert json.loads((local_dir / "index.json").read_text())["manifests"][0]["digest"] == digest  # same artifact
    _assert_layers_compressed(local_dir, "gzip", b"\x1f\x8b")  # the build's layers are uncompressed
    zstd_dir = tmp_path / "cache-zstd"
    export_cache(store, BuildCache(busybox_store), keys,
                 parse_cache_spec(f"type=local,dest={zstd_dir},compression=zstd", export=True))
    _assert_layers_compressed(zstd_dir, "zstd", b"\x28\xb5\x2f\xfd")

    for source in (f"type=registry,ref={ref}", f"type=local,src={local_dir}"):
        fresh = clone_store(busybox_store_template, tmp_path / f"fresh-{len(source)}")
        n = import_cache(Store.open(fresh), BuildCache(fresh), parse_cache_spec(source, export=False), FAST)
        assert n == 3
        second = _build(fresh, ctx)
        assert "ran-step-2" not in second and "ran-step-4" not in second, second
        assert second.count("CACHED") == 3
        assert Store.open(fresh).resolve("cached:1").config().diff_ids == store.resolve("cached:1").config().diff_ids
        assert import_cache(Store.open(fresh), BuildCache(fresh), parse_cache_spec(source, export=False), FAST) == 0


@needs_registry
def test_missing_cache_imports_nothing_and_wrong_artifact_is_refused(registry: Registry, busybox_store: Path,
                                                                      tmp_path: Path) -> None:
    store = Store.open(busybox_store)
    cache = BuildCache(busybox_store)
    missing = parse_cache_spec(f"type=registry,ref={registry.host}/cache/none:1", export=False)
    assert import_cache(store, cache, missing, FAST) == 0
    assert import_cache(store, cache, parse_cache_spec(f"type=local,src={tmp_path / 'empty'}", export=False)) == 0
    from builder.oci.reference import parse_reference
    from builder.transfer import push

    name = f"{registry.host}/cache/notcache:1"
    push(store, "busybox:latest", parse_reference(name), options=FAST)
    with pytest.raises(ImageFormatError, match="not a pybuild build cache"):
        import_cache(store, cache, parse_cache_spec(name, export=False), FAST)


@requires_root
@needs_registry
def test_cli_cache_to_and_from(busybox_store: Path, busybox_store_template: Path, registry: Registry,
                               tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "f").write_text(uuid.uuid4().hex)
    ref = f"{registry.host}/cache/{uuid.uuid4().hex[:8]}:ci"
    local_dir = tmp_path / "cache-dir"
    first = pybuild("build", "-t", "cached:1", "--progress", "plain", "--cache-to", f"type=registry,ref={ref},mode=max",
                    "--cache-to", f"type=local,dest={local_dir}", str(ctx), env={"PYBUILD_ROOT": str(busybox_store)}).stderr
    assert "ran-step-2" in first
    for source in (f"type=registry,ref={ref}", f"type=local,src={local_dir}"):
        fresh = clone_store(busybox_store_template, tmp_path / f"fresh-{len(source)}")
        out = pybuild("build", "-t", "cached:1", "--progress", "plain", "--cache-from", source, str(ctx),
                      env={"PYBUILD_ROOT": str(fresh)}).stderr
        assert "ran-step-2" not in out and "ran-step-4" not in out and out.count("CACHED") == 3, out
    bad = pybuild("build", "--cache-from", "type=s3,ref=x", str(ctx), check=False, env={"PYBUILD_ROOT": str(busybox_store)})
    assert bad.returncode == 1 and "must be registry or local" in bad.stderr
