"""Pull and push between the store and a real registry; interop with skopeo and podman; faults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from builder.errors import DigestMismatchError, RegistryError
from builder.oci import mutate
from builder.oci.model import ContainerConfig, Digest, History, ImageConfig, Platform
from builder.oci.reference import parse_reference
from builder.oci.platform import host as host_platform
from builder.transfer import ensure_image, pull, push, resolve_digest
from builder.registry.transport import RegistryOptions
from builder.store import Store
from tests.builder.registry_server import FaultProxy, Registry, needs_registry
from tests.conftest import pybuild, requires_root, requires_tool

pytestmark = needs_registry
FAST = RegistryOptions(backoff=0.01, max_backoff=0.05, retries=3)


def _unique_image(root: Path, tmp_path: Path, tag: str, size: int = 50_000) -> str:
    """busybox plus one layer of random bytes, tagged `tag` in the store at `root`; returns its id."""
    store = Store.open(root)
    base = store.resolve("busybox:latest")
    d = tmp_path / f"layer-{uuid.uuid4().hex[:6]}"
    (d / "data").mkdir(parents=True)
    (d / "data" / "random.bin").write_bytes(os.urandom(size))
    rec = store.commit_dir(d, epoch=0)
    image = mutate.append_layers(base, store.blob_layer(rec), history=[History(created_by="COPY random.bin /data/")])
    image = mutate.with_config(image, ContainerConfig(cmd=("sh", "-c", "echo hello from pybuild"),
                                                      env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)))
    return store.put_image(image, [tag])


def _ref(reg: Registry | FaultProxy, name: str | None = None) -> str:
    return f"{reg.host}/{name or 'test/' + uuid.uuid4().hex[:10]}:v1"


def test_push_pull_roundtrip_and_repo_digests(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    image_id = _unique_image(busybox_store, tmp_path, "app:1")
    store = Store.open(busybox_store)
    ref = parse_reference(_ref(registry))
    pushed = push(store, "app:1", ref, options=FAST)
    assert pushed.uploaded > 0 and pushed.skipped == 0
    assert pushed.digest == store.resolve("app:1").digest
    assert store.repo_digests(image_id) == [f"{ref.name}@{pushed.digest}"]
    assert resolve_digest(ref, FAST) == pushed.digest

    again = push(store, "app:1", ref, options=FAST)  # unchanged: nothing uploaded
    assert (again.uploaded, again.skipped, again.digest) == (0, 3, pushed.digest)

    other = push(store, "app:1", parse_reference(_ref(registry)), options=FAST)  # same registry: mount
    assert other.uploaded == 0 and other.mounted == 3

    fresh = Store.open(tmp_path / "fresh")
    got = pull(fresh, ref, options=FAST)
    assert got.image.id == image_id and got.digest == pushed.digest and got.downloaded > 0
    assert fresh.resolve(ref.familiar()).id == image_id
    assert fresh.resolve(f"{ref.name}@{pushed.digest}").id == image_id
    assert fresh.repo_digests(image_id) == [f"{ref.name}@{pushed.digest}"]
    shown = json.loads(pybuild("inspect", ref.familiar(), env={"PYBUILD_ROOT": str(fresh.root)}).stdout)[0]
    assert shown["RepoDigests"] == [f"{ref.name}@{pushed.digest}"] and shown["Digest"] == pushed.digest
    assert json.loads(pybuild("inspect", "busybox").stdout)[0]["RepoDigests"] == []  # never pulled or pushed
    for layer in got.image.layers():  # every blob landed, verified, and unpacks to its diff_id
        (tmp_path / f"unpack-{layer.digest.short}").mkdir()
        fresh.unpack_layer(layer, tmp_path / f"unpack-{layer.digest.short}")
    assert pull(fresh, ref, options=FAST).downloaded == 0
    assert not list((fresh.root / "tmp").iterdir())


def test_cli_push_pull_and_errors(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = _ref(registry)
    _unique_image(busybox_store, tmp_path, name)
    out = pybuild("push", name).stdout
    assert "digest: sha256:" in out and f"[{name.rsplit(':', 1)[0]}]" in out
    assert "uploaded 0 bytes, 0 mounted, 3 already there" in pybuild("push", name).stdout
    env = {"PYBUILD_ROOT": str(tmp_path / "other")}
    out = pybuild("pull", name, env=env).stdout
    assert "Status: Downloaded newer image" in out and out.strip().endswith(name)
    assert "Image is up to date" in pybuild("pull", name, env=env).stdout

    missing = pybuild("pull", f"{registry.host}/no/such:tag", check=False, env=env)
    assert missing.returncode == 1 and "MANIFEST_UNKNOWN" in missing.stderr or "NAME_UNKNOWN" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = pybuild("pull", "Bad/Name", check=False)
    assert bad.returncode == 1 and "must be lowercase" in bad.stderr
    refused = pybuild("pull", "127.0.0.1:1/x:y", check=False, env={"PYBUILD_REGISTRY_RETRIES": "0"})
    assert refused.returncode == 1 and "127.0.0.1:1" in refused.stderr and "Traceback" not in refused.stderr
    digest = resolve_digest(parse_reference(name), FAST)
    by_digest = f"{registry.host}/bydigest/{uuid.uuid4().hex[:6]}@{digest}"
    pybuild("push", "--from", name, by_digest)  # untagged, by digest
    assert resolve_digest(parse_reference(by_digest), FAST) == digest
    nolocal = pybuild("push", f"{registry.host}/never/built:1", check=False)
    assert nolocal.returncode == 1 and "not in the store" in nolocal.stderr


def test_ensure_image_prefers_local_and_pulls_missing(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    store = Store.open(busybox_store)
    assert ensure_image(store, "busybox").id == store.resolve("busybox:latest").id  # local, no registry asked
    name = _ref(registry)
    image_id = _unique_image(busybox_store, tmp_path, name)
    push(store, name, parse_reference(name), options=FAST)
    fresh = Store.open(tmp_path / "fresh")
    assert ensure_image(fresh, name, options=FAST).id == image_id
    digest = resolve_digest(parse_reference(name), FAST)
    assert ensure_image(fresh, f"{name.rsplit(':', 1)[0]}@{digest}", options=FAST).id == image_id
    with pytest.raises(RegistryError, match="not in the store and .* does not have it"):
        ensure_image(fresh, f"{registry.host}/missing/image:1", options=FAST)
    pinned = Store.open(tmp_path / "pinned")
    assert ensure_image(pinned, f"{name}@{digest}", options=FAST).id == image_id
    assert pinned.tags() == {}  # a digest reference never moves a tag


def test_interrupted_push_leaves_no_tag(busybox_store: Path, registry: Registry, fault_proxy: FaultProxy,
                                        tmp_path: Path) -> None:
    name = _ref(fault_proxy)
    _unique_image(busybox_store, tmp_path, name, size=200_000)
    fault_proxy.add(r"PUT /v2/.*/blobs/uploads/", "500", times=1000)
    with pytest.raises(RegistryError):
        push(Store.open(busybox_store), name, parse_reference(name), options=FAST)
    assert not any(line.startswith("PUT") and "/manifests/" in line for line in fault_proxy.log)
    direct = parse_reference(name.replace(fault_proxy.host, registry.host))
    with pytest.raises(RegistryError) as exc:
        resolve_digest(direct, FAST)
    assert exc.value.status == 404


def test_corrupt_pull_stores_nothing(busybox_store: Path, registry: Registry, fault_proxy: FaultProxy,
                                     tmp_path: Path) -> None:
    name = _ref(registry)
    image_id = _unique_image(busybox_store, tmp_path, name, size=300_000)
    store = Store.open(busybox_store)
    push(store, name, parse_reference(name), options=FAST)
    big = max(store.resolve(name).layers(), key=lambda l: l.size)
    fault_proxy.add(rf"GET /v2/.*/blobs/{big.digest}", "corrupt", times=1000)
    fresh = Store.open(tmp_path / "fresh")
    via = parse_reference(name.replace(registry.host, fault_proxy.host))
    with pytest.raises(DigestMismatchError):
        pull(fresh, via, options=FAST)
    assert not fresh.has_blob(big.digest) and not fresh.tags() and not list((fresh.root / "tmp").iterdir())
    fault_proxy.faults.clear()
    fault_proxy.add(rf"GET /v2/.*/blobs/{big.digest}", "reset", times=2)
    assert pull(fresh, via, options=FAST).image.id == image_id  # resumed


# -- interop -------------------------------------------------------------------------------------

@requires_tool("skopeo")
def test_skopeo_reads_what_we_push(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = _ref(registry)
    image_id = _unique_image(busybox_store, tmp_path, name)
    pushed = push(Store.open(busybox_store), name, parse_reference(name), options=FAST)
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["Digest"] == pushed.digest and len(info["Layers"]) == 2
    raw_config = subprocess.run(["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", f"docker://{name}"],
                                check=True, capture_output=True).stdout
    assert Digest.of(raw_config) == image_id
    layout = tmp_path / "layout"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{layout}:v1"],
                   check=True, capture_output=True)
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed.digest  # byte-identical manifest


def _multiarch_layout(store: Store, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An OCI layout holding an index of two images (amd64 and arm64) built from busybox's layer."""
    layout = tmp_path / "multi"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    base = store.resolve("busybox:latest")
    layer = base.layers()[0]
    shutil.copy(store.blob_path(layer.digest), blobs / layer.digest.hex)
    entries, ids = [], {}
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        config = ImageConfig(architecture=arch, variant=variant, diff_ids=(layer.diff_id,),
                             config=ContainerConfig(cmd=("sh",), labels={"arch": arch}))
        raw_config = config.to_json()
        (blobs / Digest.of(raw_config).hex).write_bytes(raw_config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": Digest.of(raw_config), "size": len(raw_config)},
                               "layers": [{"mediaType": layer.media_type, "digest": layer.digest,
                                           "size": layer.size}]}).encode()
        (blobs / Digest.of(manifest).hex).write_bytes(manifest)
        plat = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": Digest.of(manifest),
                        "size": len(manifest), "platform": plat})
        ids[arch] = Digest.of(raw_config)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}).encode()
    (blobs / Digest.of(index).hex).write_bytes(index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": Digest.of(index), "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return layout, ids


@requires_tool("skopeo")
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_pull_multiarch_index_pushed_by_skopeo(busybox_store: Path, registry: Registry, tmp_path: Path, fmt: str) -> None:
    layout, ids = _multiarch_layout(Store.open(busybox_store), tmp_path)
    name = _ref(registry)
    subprocess.run(["skopeo", "copy", "--all", "--format", fmt, "--dest-tls-verify=false", f"oci:{layout}:multi",
                    f"docker://{name}"], check=True, capture_output=True)
    fresh = Store.open(tmp_path / "fresh")
    ref = parse_reference(name)
    arm = pull(fresh, ref, platform=Platform("linux", "arm64", "v8"), options=FAST)
    assert arm.image.config().architecture == "arm64"
    if fmt == "oci":  # skopeo keeps an OCI config byte for byte; v2s2 rewrites the config
        assert arm.image.id == ids["arm64"]
    else:
        assert arm.image.manifest().media_type == "application/vnd.docker.distribution.manifest.v2+json"
    amd = pull(fresh, ref, platform=Platform("linux", "amd64"), options=FAST)
    assert amd.image.config().architecture == "amd64" and amd.digest == arm.digest  # both from one index
    assert amd.downloaded == 0  # the shared layer was already there
    with pytest.raises(RegistryError, match="no image for platform linux/s390x .*linux/amd64, linux/arm64/v8") as exc:
        pull(fresh, ref, platform=Platform("linux", "s390x"), options=FAST)
    assert exc.value.message.startswith(f"{ref}: ")  # names the registry and reference
    assert host_platform().os == "linux"
    single = parse_reference(_ref(registry))  # one platform manifest pushed on its own
    push(fresh, arm.image.id, single, options=FAST)
    with pytest.raises(RegistryError, match="is for linux/arm64/v8, not the requested linux/amd64"):
        pull(Store.open(tmp_path / "other"), single, platform=Platform("linux", "amd64"), options=FAST)


@requires_root
@requires_tool("podman", "runc")
def test_podman_pulls_and_runs_what_we_push(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = _ref(registry)
    _unique_image(busybox_store, tmp_path, name)
    push(Store.open(busybox_store), name, parse_reference(name), options=FAST)
    runroot = tempfile.mkdtemp(prefix="pbr-")  # podman wants a runroot under 50 characters
    podman = ["podman", "--root", str(tmp_path / "podman-root"), "--runroot", runroot,
              "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    pulled = subprocess.run([*podman, "pull", "--tls-verify=false", name], capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    run = subprocess.run([*podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
                          "--ulimit", "nproc=1024:1024", name], capture_output=True, text=True, timeout=120)
    subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True, timeout=60)
    shutil.rmtree(runroot, ignore_errors=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from pybuild"


@requires_root
def test_build_from_pulls_a_missing_base(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = _ref(registry)
    image_id = _unique_image(busybox_store, tmp_path, name)
    push(Store.open(busybox_store), name, parse_reference(name), options=FAST)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN test -f /data/random.bin && echo base-ok > /ok\n")
    fresh = tmp_path / "fresh"  # an empty store: FROM must pull
    pybuild("build", "-t", "child:1", "--progress", "plain", str(ctx), env={"PYBUILD_ROOT": str(fresh)})
    store = Store.open(fresh)
    assert store.resolve(name).id == image_id
    assert store.resolve("child:1").config().diff_ids[:2] == store.resolve(name).config().diff_ids


def test_build_push_honours_output_compression(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    """`--output type=registry,compression=zstd` pushes zstd layers, also when the build's layers came
    from the cache (committed uncompressed by an earlier plain build)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("zstd please\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f.txt /f.txt\n")
    pybuild("build", "-q", "-t", "local:1", str(ctx))  # the COPY layer is now cached, uncompressed
    name = _ref(registry)
    pybuild("build", "-q", "--output", f"type=registry,name={name},compression=zstd", str(ctx))
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
                                    check=True, capture_output=True).stdout)
    assert raw["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd", raw["layers"]
    fresh = Store.open(tmp_path / "fresh")
    got = pull(fresh, parse_reference(name), options=FAST)
    assert got.image.id == Store.open(busybox_store).resolve("local:1").id  # same config, another codec
    (tmp_path / "top").mkdir()
    fresh.unpack_layer(got.image.layers()[-1], tmp_path / "top")
    assert (tmp_path / "top" / "f.txt").read_text() == "zstd please\n"
    assert raw["layers"][0]["mediaType"].endswith("+gzip")  # the gzip base is kept, as buildx does

    forced = _ref(registry)  # buildx's force-compression=true: the base layer too
    pybuild("build", "-q", "--output", f"type=registry,name={forced},compression=zstd,force-compression=true",
            "--output", f"type=oci,dest={tmp_path / 'forced.tar'},compression=zstd,force-compression=true", str(ctx))
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{forced}"],
                                    check=True, capture_output=True).stdout)
    assert [l["mediaType"][-5:] for l in raw["layers"]] == ["+zstd", "+zstd"], raw["layers"]
    archived = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{tmp_path / 'forced.tar'}"],
                                         check=True, capture_output=True).stdout)
    assert archived == raw  # the same manifest in the archive and in the registry
    assert pull(Store.open(tmp_path / "fresh2"), parse_reference(forced), options=FAST).image.id == got.image.id


def test_repo_digest_of_a_pushed_build_resolves_locally(busybox_store: Path, registry: Registry,
                                                        tmp_path: Path) -> None:
    """A build's layers are uncompressed, so the pushed manifest (gzip) has another digest than the
    local one; `inspect`/`save` NAME@<pushed digest> still find the image, as with docker."""
    from tests.builder.store_helpers import built_image

    store = Store.open(busybox_store)
    image, _rec = built_image(store, tmp_path / "upper")
    name = _ref(registry)
    image_id = store.put_image(image, [name])
    pushed = push(store, name, parse_reference(name), options=FAST)
    assert pushed.digest != store.resolve(name).digest
    by_digest = f"{name.rsplit(':', 1)[0]}@{pushed.digest}"
    assert json.loads(pybuild("inspect", by_digest).stdout)[0]["Id"] == image_id
    pybuild("save", "-o", str(tmp_path / "s.tar"), by_digest)
    other = f"{registry.host}/never/pushed@{pushed.digest}"  # the digest alone is not enough
    proc = pybuild("inspect", other, check=False)
    assert proc.returncode == 1 and "is not in the store" in proc.stderr, proc.stderr


def test_ctrl_c_mid_pull_leaves_store_clean(busybox_store: Path, registry: Registry, fault_proxy: FaultProxy,
                                           tmp_path: Path) -> None:
    import signal
    import sys
    import time

    name = _ref(registry)
    _unique_image(busybox_store, tmp_path, name, size=24_000_000)  # ~7.5 s through the slow proxy
    push(Store.open(busybox_store), name, parse_reference(name), options=FAST)
    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "slow", times=100)
    fresh = tmp_path / "fresh"
    proc = subprocess.Popen([sys.executable, "-m", "builder", "pull", "-q", name.replace(registry.host, fault_proxy.host)],
                            env={**os.environ, "PYBUILD_ROOT": str(fresh)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not any(" !slow" in line for line in fault_proxy.log) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err
    assert time.monotonic() - t0 < 5  # the downloads stopped (unstopped, the slow body takes longer)
    store = Store.open(fresh)
    assert not list((fresh / "tmp").iterdir()) and not store.tags()
    for blob in (fresh / "blobs" / "sha256").iterdir():  # whatever landed is whole and verified
        assert Digest.of(blob.read_bytes()) == "sha256:" + blob.name


@requires_root
def test_build_pull_flag_refreshes_a_moved_tag(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = _ref(registry)
    first = _unique_image(busybox_store, tmp_path, "a:1")
    second = _unique_image(busybox_store, tmp_path, "b:1")
    store = Store.open(busybox_store)
    push(store, "a:1", parse_reference(name), options=FAST)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN echo child > /child\n")
    env = {"PYBUILD_ROOT": str(tmp_path / "builder")}
    pybuild("build", "-t", "child:1", str(ctx), env=env)
    push(store, "b:1", parse_reference(name), options=FAST)  # the tag moves in the registry
    pybuild("build", "-t", "child:1", str(ctx), env=env)
    local = Store.open(tmp_path / "builder")
    assert local.resolve(name).id == first  # without --pull the local base is used
    pybuild("build", "--pull", "-t", "child:1", str(ctx), env=env)
    assert local.resolve(name).id == second
    assert local.resolve("child:1").config().diff_ids[:-1] == local.resolve(name).config().diff_ids


def test_push_of_a_corrupt_local_blob_is_refused(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = _ref(registry)
    _unique_image(busybox_store, tmp_path, name)
    store = Store.open(busybox_store)
    top = store.resolve(name).layers()[-1]
    path = store.blob_path(top.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError) as exc:
        push(store, name, parse_reference(name), options=FAST)
    assert "DIGEST_INVALID" in exc.value.codes
    with pytest.raises(RegistryError) as missing:
        resolve_digest(parse_reference(name), FAST)
    assert missing.value.status == 404  # the manifest was never sent


def test_images_size_is_the_same_built_pushed_and_pulled(busybox_store: Path, registry: Registry,
                                                         tmp_path: Path) -> None:
    """Docker's SIZE (uncompressed) for one image id, whether it was made here or pulled gzipped."""
    name = _ref(registry)
    image_id = _unique_image(busybox_store, tmp_path, name, size=300_000)
    pybuild("push", name)
    env = {"PYBUILD_ROOT": str(tmp_path / "pulled")}
    pybuild("pull", name, env=env)
    fmt = ("images", "--format", "{{.ID}} {{.Size}}", "-f", f"reference={name.rsplit(':', 1)[0]}")
    here = pybuild(*fmt, env={"PYBUILD_ROOT": str(busybox_store)}).stdout
    there = pybuild(*fmt, env=env).stdout
    assert here == there == f"{image_id[7:19]} {here.split()[1]}\n" and here.split()[1].endswith("MB"), (here, there)
