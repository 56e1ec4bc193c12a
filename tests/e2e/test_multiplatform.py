"""Multi-platform builds: `--platform a,b` builds every platform (RUN under qemu-user-static), writes
one OCI index to the store and every output; FROM of an index picks the platform's image; the
platform is in every RUN key; errors for a missing emulator and a base without the platform."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import pybuild, requires_root, requires_tool

pytestmark = requires_root

MULTI_BASE = "ARG TARGETARCH\nFROM busybox:$TARGETARCH\n"  # how a multi-platform base is made from per-arch images


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path, busybox_arm64_tar: Path,
        busybox_armv7_tar: Path) -> dict[str, str]:
    """A store with busybox:amd64, :arm64 and :arm (arm/v7) imported, and busybox:multi, an index of
    the amd64 and arm64 ones."""
    root = tmp_path_factory.mktemp("mp-store")
    env = {"PYBUILD_ROOT": str(root)}
    pybuild("import", str(busybox_tar), "busybox:amd64", env=env)
    pybuild("import", "--platform", "linux/arm64", str(busybox_arm64_tar), "busybox:arm64", env=env)
    pybuild("import", "--platform", "linux/arm/v7", str(busybox_armv7_tar), "busybox:arm", env=env)
    ctx = tmp_path_factory.mktemp("mp-base")
    (ctx / "Dockerfile").write_text(MULTI_BASE)
    pybuild("build", "--platform", "linux/amd64,linux/arm64", "-t", "busybox:multi", str(ctx), env=env)
    return env


def _context(tmp_path: Path, dockerfile: str) -> str:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return str(tmp_path)


def _files(store_env: dict[str, str], ref: str, platform: str, tmp_path: Path) -> Path:
    """The files of `ref`'s image for `platform`, through `pybuild save --platform` (a docker-archive)."""
    out = tmp_path / f"save-{platform.replace('/', '_')}"
    out.mkdir()
    pybuild("save", "--platform", platform, "-o", str(out / "img.tar"), ref, env=store_env)
    with tarfile.open(out / "img.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=tar.extractfile(layer)) as lt:
                lt.extractall(out / "rootfs", filter="tar")
    return out / "rootfs"


def test_two_platforms_run_in_both_and_make_one_index(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox:multi\nARG TARGETPLATFORM TARGETARCH\n"
                             "RUN uname -m > /arch && echo $TARGETPLATFORM $TARGETARCH > /target && "
                             "cut -d' ' -f19 /proc/1/stat > /nice\n")  # the container's niceness
    out = pybuild("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "two:1", ctx,
                  env=env).stderr
    assert "[linux/arm64 2/2] RUN uname -m" in out and "[linux/amd64 2/2] RUN uname -m" in out, out
    doc = json.loads(pybuild("inspect", "two:1", env=env).stdout)[0]
    assert doc["Index"]["Platforms"] == ["linux/amd64", "linux/arm64"] and doc["Architecture"] == "amd64"
    arm = json.loads(pybuild("inspect", "--platform", "linux/arm64", "two:1", env=env).stdout)[0]
    assert arm["Architecture"] == "arm64" and arm["Os"] == "linux" and arm["Id"] != doc["Id"]
    listed = [line.split()[:2] for line in pybuild("images", env=env).stdout.splitlines()[1:]]
    assert listed.count(["two", "1"]) == 1 and ["<none>", "<none>"] not in listed  # one name, its images hidden
    for platform, machine, arch in (("linux/amd64", "x86_64", "amd64"), ("linux/arm64", "aarch64", "arm64")):
        files = _files(env, "two:1", platform, tmp_path)
        assert (files / "arch").read_text() == machine + "\n"
        assert (files / "target").read_text() == f"{platform} {arch}\n"
        nice = os.getpriority(os.PRIO_PROCESS, 0) + (10 if arch == "arm64" else 0)  # emulated: yields the CPU
        assert (files / "nice").read_text() == f"{min(nice, 19)}\n"
    run = pybuild("run", "--rm", "--network", "none", "--platform", "linux/arm64", "two:1", "cat", "/arch", env=env)
    assert run.stdout == "aarch64\n"
    assert pybuild("run", "--rm", "--network", "none", "two:1", "cat", "/arch", env=env).stdout == "x86_64\n"
    report = json.loads(pybuild("analyze", "--json", "--platform", "linux/arm64", "two:1", env=env).stdout)
    assert report["image"]["id"] == arm["Id"] and report["image"]["platform"] == "linux/arm64"
    pybuild("prune", "-f", env=env)  # a tagged index keeps its blob and both images
    assert pybuild("run", "--rm", "--network", "none", "--platform", "linux/arm64", "two:1", "cat", "/arch",
                   env=env).stdout == "aarch64\n"
    again = pybuild("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "two:1", ctx,
                    env=env).stderr
    assert again.count("CACHED") == 2
    before = pybuild("images", env=env).stdout.count("<none>")
    assert "Untagged: two:1" in pybuild("rmi", "two:1", env=env).stdout
    after = pybuild("images", env=env).stdout
    assert "two " not in after and after.count("<none>") == before  # its images went with it


def test_shared_build_platform_stage_runs_once(env: dict[str, str], tmp_path: Path) -> None:
    """The cross-compilation pattern: a $BUILDPLATFORM stage is built once and copied into every target."""
    ctx = _context(tmp_path, "FROM --platform=$BUILDPLATFORM busybox:multi AS build\n"
                             "RUN head -c 16 /dev/urandom | od -An -tx1 > /out && uname -m >> /out\n"
                             "FROM busybox:multi\nCOPY --from=build /out /out\nRUN uname -m > /arch\n")
    out = pybuild("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "cross:1",
                  "--output", f"type=local,dest={tmp_path / 'out'}", ctx, env=env).stderr
    assert out.count("RUN head -c 16") == 1, out
    amd, arm = (tmp_path / "out" / "linux_amd64"), (tmp_path / "out" / "linux_arm64")
    assert (amd / "out").read_text() == (arm / "out").read_text()  # one run's random bytes in both
    assert (amd / "out").read_text().endswith("x86_64\n")  # ran on the build platform
    assert (amd / "arch").read_text() == "x86_64\n" and (arm / "arch").read_text() == "aarch64\n"


def test_foreign_run_is_never_a_hit_of_the_hosts(env: dict[str, str], tmp_path: Path) -> None:
    """Same parent (scratch + the same files), same command: the platform alone must separate the keys."""
    shutil.copy("/bin/busybox", tmp_path / "busybox")
    ctx = _context(tmp_path, 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "touch", "/ran"]\n')
    first = pybuild("build", "--progress", "plain", "--platform", "linux/amd64", ctx, env=env).stderr
    second = pybuild("build", "--progress", "plain", "--platform", "linux/arm64", ctx, env=env).stderr
    assert "CACHED" not in first.split("RUN")[-1]
    run_part = second.split('RUN ["/bin/busybox"')[-1]
    assert "CACHED" not in run_part, second
    third = pybuild("build", "--progress", "plain", "--platform", "linux/arm64", ctx, env=env).stderr
    assert "CACHED" in third.split('RUN ["/bin/busybox"')[-1]


def test_armv7_base_and_missing_platform_errors(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox:multi\nRUN uname -m > /arch\n")
    missing = pybuild("build", "--platform", "linux/amd64,linux/arm/v7", ctx, check=False, env=env)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert ("Dockerfile:1:1: image 'busybox:multi' has no image for platform linux/arm/v7 "
            "(it has: linux/amd64, linux/arm64)") in missing.stderr
    single = pybuild("build", "--platform", "linux/arm64", _context(tmp_path, "FROM busybox:amd64\n"), check=False,
                     env=env)
    assert single.returncode == 1
    assert "Dockerfile:1:1: image 'busybox:amd64' has no image for platform linux/arm64 (it has: linux/amd64)" in single.stderr
    # linux/arm (no variant) is arm/v7, as containerd normalises it; its RUN runs under qemu-arm
    ctx = _context(tmp_path, "FROM busybox:arm\nRUN uname -m > /arch\n")
    pybuild("build", "--platform", "linux/arm", "-t", "v7:1", ctx, env=env)
    doc = json.loads(pybuild("inspect", "v7:1", env=env).stdout)[0]
    assert (doc["Os"], doc["Architecture"], doc["Variant"]) == ("linux", "arm", "v7")
    assert (_files(env, "v7:1", "linux/arm/v7", tmp_path) / "arch").read_text() == "armv7l\n"


def test_a_platform_list_builds_every_platform_or_fails(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox:multi\n")
    for bad in ("linux/amd64,", "linux/amd64,bogus", "amd64,linux/"):
        proc = pybuild("build", "--platform", bad, ctx, check=False, env=env)
        assert proc.returncode == 1 and f"invalid --platform {bad!r}" in proc.stderr and "Traceback" not in proc.stderr
    docker = pybuild("build", "--platform", "linux/amd64,linux/arm64", "--output",
                     f"type=docker,dest={tmp_path / 'd.tar'}", ctx, check=False, env=env)
    assert docker.returncode == 1 and "cannot hold a multi-platform image" in docker.stderr
    pybuild("build", "--platform", "linux/amd64,linux/arm64", "--output", f"type=tar,dest={tmp_path / 'r.tar'}",
            ctx, env=env)  # as buildx: one directory per platform in the tar
    with tarfile.open(tmp_path / "r.tar") as tar:
        busyboxes = {n: tar.extractfile(n).read()[18:20] for n in ("linux_amd64/bin/busybox",  # type: ignore[union-attr]
                                                                   "linux_arm64/bin/busybox")}
    assert busyboxes == {"linux_amd64/bin/busybox": b"\x3e\x00", "linux_arm64/bin/busybox": b"\xb7\x00"}


def test_missing_emulator_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox:multi\nRUN uname -m\n")
    empty = tmp_path / "binfmt"
    empty.mkdir()
    (empty / "register").touch()  # mounted, nothing registered
    proc = pybuild("build", "--platform", "linux/amd64,linux/arm64", ctx, check=False,
                   env={**env, "PYBUILD_BINFMT_DIR": str(empty)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot run linux/arm64 programs" in proc.stderr and "apt-get install qemu-user-static" in proc.stderr
    run = pybuild("run", "--rm", "--platform", "linux/arm64", "busybox:multi", "true", check=False,
                  env={**env, "PYBUILD_BINFMT_DIR": str(empty)})
    assert run.returncode == 125 and "qemu-user-static" in run.stderr


@requires_tool("skopeo", "umoci")
def test_oci_output_holds_the_index(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox:multi\nRUN uname -m > /arch\n")
    dest = tmp_path / "img.tar"
    pybuild("build", "--platform", "linux/amd64,linux/arm64", "-t", "oci:1", "--output", f"type=oci,dest={dest}",
            ctx, env=env)
    for arch in ("amd64", "arm64"):
        cfg = json.loads(subprocess.run(["skopeo", "--override-arch", arch, "inspect", "--config",
                                         f"oci-archive:{dest}"], check=True, capture_output=True, text=True).stdout)
        assert cfg["architecture"] == arch


@requires_tool("skopeo", "podman", "runc", "docker-registry")
def test_pushed_index_is_read_by_skopeo_podman_and_pulled_by_platform(env: dict[str, str], registry,  # noqa: ANN001
                                                                       tmp_path: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    name = f"{registry.host}/mp/app:1"
    ctx = _context(tmp_path, "FROM busybox:multi\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n")
    built = pybuild("build", "--platform", "linux/amd64,linux/arm64", "-t", name, "--push", ctx, env=env)
    assert "Traceback" not in built.stderr
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
                                    check=True, capture_output=True, text=True).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"]
    cfg = json.loads(subprocess.run(["skopeo", "--override-arch", "arm64", "inspect", "--config", "--tls-verify=false",
                                     f"docker://{name}"], check=True, capture_output=True, text=True).stdout)
    assert cfg["architecture"] == "arm64" and cfg["config"]["Cmd"] == ["cat", "/arch"]
    # podman pulls the arm64 image from the index and runs it (qemu through binfmt_misc)
    runroot = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))  # podman wants a short runroot
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    podman = ["podman", "--root", str(tmp_path / "pm-root"), "--runroot", str(runroot), "--runtime", "runc",
              "--storage-driver", "vfs", "--events-backend", "file"]
    run = subprocess.run([*podman, "run", "--rm", "--tls-verify=false", "--platform", "linux/arm64", "--network",
                          "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", name],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "aarch64\n"
    arch = subprocess.run([*podman, "image", "inspect", "--format", "{{.Architecture}}", name], capture_output=True,
                          text=True, timeout=60)
    assert arch.stdout.strip() == "arm64"
    # one platform into a fresh store; then every platform, keeping the index
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh")}
    pybuild("pull", "--platform", "linux/arm64", name, env=fresh)
    one = json.loads(pybuild("inspect", name, env=fresh).stdout)[0]
    assert one["Architecture"] == "arm64" and "Index" not in one
    assert pybuild("run", "--rm", "--network", "none", name, env=fresh).stdout == "aarch64\n"
    every = {"PYBUILD_ROOT": str(tmp_path / "every")}
    pybuild("pull", "--platform", "all", name, env=every)
    doc = json.loads(pybuild("inspect", name, env=every).stdout)[0]
    assert doc["Index"]["Platforms"] == ["linux/amd64", "linux/arm64"] and doc["Architecture"] == "amd64"
    # the stored index pushes whole, under another name: the same index digest
    other = f"{registry.host}/mp/copy:1"
    pybuild("tag", name, other, env=every)
    pybuild("push", other, env=every)
    copied = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{other}"], check=True,
                            capture_output=True, text=True).stdout
    assert json.loads(copied) == raw


def test_copy_from_an_index_takes_the_stage_platforms_image(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\nCOPY --from=busybox:multi /bin/busybox /busybox\n")
    pybuild("build", "--platform", "linux/amd64,linux/arm64", "--output", f"type=local,dest={tmp_path / 'out'}", ctx,
            env=env)
    machine = {p: int.from_bytes((tmp_path / "out" / p / "busybox").read_bytes()[18:20], "little")
               for p in ("linux_amd64", "linux_arm64")}
    assert machine == {"linux_amd64": 0x3E, "linux_arm64": 0xB7}  # ELF e_machine: x86-64, AArch64


@requires_tool("docker-registry")
def test_from_a_registry_index_pulls_each_platform_and_keeps_the_name_native(env: dict[str, str], registry,  # noqa: ANN001
                                                                               tmp_path: Path) -> None:
    base = f"{registry.host}/mp/base:1"
    pybuild("tag", "busybox:multi", base, env=env)
    pybuild("push", base, env=env)
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh")}
    ctx = _context(tmp_path, f"FROM {base}\nRUN uname -m > /arch\n")
    pybuild("build", "--platform", "linux/amd64,linux/arm64", "--output", f"type=local,dest={tmp_path / 'out'}", ctx,
            env=fresh)
    assert (tmp_path / "out" / "linux_arm64" / "arch").read_text() == "aarch64\n"
    assert (tmp_path / "out" / "linux_amd64" / "arch").read_text() == "x86_64\n"
    # the name still means this machine's image: a plain build and run use it
    assert json.loads(pybuild("inspect", base, env=fresh).stdout)[0]["Architecture"] == "amd64"
    pybuild("build", "-t", "plain:1", ctx, env=fresh)
    assert pybuild("run", "--rm", "--network", "none", "plain:1", "cat", "/arch", env=fresh).stdout == "x86_64\n"
    # an arm64-only build finds the arm64 image it pulled before (the index's, recorded under its digest)
    again = pybuild("build", "--progress", "plain", "--platform", "linux/arm64", ctx, env=fresh).stderr
    assert "CACHED" in again.split("RUN uname")[-1]


def test_target_of_a_build_platform_stage_is_refused_not_duplicated(env: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM --platform=$BUILDPLATFORM busybox:multi AS tools\nRUN true\nFROM busybox:multi\n")
    proc = pybuild("build", "--platform", "linux/amd64,linux/arm64", "--target", "tools", ctx, check=False, env=env)
    assert proc.returncode == 1 and "would hold linux/amd64 twice" in proc.stderr and "Traceback" not in proc.stderr


def _raw_manifest(host: str, repo: str, ref: str) -> bytes:
    """The manifest (or index) bytes the loopback registry serves for repo:ref."""
    import urllib.request

    accept = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


@requires_tool("docker-registry")
def test_plain_pull_keeps_a_partial_index(env: dict[str, str], registry, tmp_path: Path) -> None:  # noqa: ANN001
    import hashlib

    name = f"{registry.host}/mp/part:1"
    pybuild("tag", "busybox:multi", name, env=env)
    pybuild("push", name, env=env)
    served = _raw_manifest(registry.host, "mp/part", "1")
    index_digest = "sha256:" + hashlib.sha256(served).hexdigest()
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh")}
    pulled = pybuild("pull", name, env=fresh).stdout
    assert f"Digest: {index_digest}" in pulled
    # the name points at the registry's index, exact bytes, with only this machine's image present
    doc = json.loads(pybuild("inspect", name, env=fresh).stdout)[0]
    assert doc["Index"]["Digest"] == index_digest and doc["Architecture"] == "amd64"
    assert doc["Index"]["Platforms"] == ["linux/amd64", "linux/arm64"] and doc["Index"]["Pulled"] == ["linux/amd64"]
    assert len(pybuild("images", "-q", env=fresh).stdout.split()) == 1
    assert "mp/part" in pybuild("images", env=fresh).stdout  # listed with this machine's image's size
    assert pybuild("run", "--rm", "--network", "none", name, "uname", "-m", env=fresh).stdout == "x86_64\n"
    # the platform not pulled: a clear error pointing at pull --platform, for inspect, save, run
    for cmd in (["inspect", "--platform", "linux/arm64", name],
                ["save", "--platform", "linux/arm64", "-o", str(tmp_path / "a.tar"), name],
                ["run", "--rm", "--platform", "linux/arm64", name, "true"]):
        proc = pybuild(*cmd, check=False, env=fresh)
        assert proc.returncode in (1, 125) and "not pulled" in proc.stderr  # run: Docker's 125
        assert "Traceback" not in proc.stderr, proc.stderr
        assert f"pybuild pull --platform linux/arm64 {name}" in proc.stderr
    # the whole index cannot be saved or pushed while it lacks an image
    proc = pybuild("save", "--format", "oci", "-o", str(tmp_path / "all.tar"), name, check=False, env=fresh)
    assert proc.returncode == 1 and "linux/arm64" in proc.stderr and "pull --platform all" in proc.stderr
    other = f"{registry.host}/mp/partcopy:1"
    pybuild("tag", name, other, env=fresh)
    proc = pybuild("push", other, check=False, env=fresh)
    assert proc.returncode == 1 and "never pulled (linux/arm64)" in proc.stderr and "Traceback" not in proc.stderr
    # a FROM of the name (this machine's platform) uses the stored image, no second image appears
    ctx = _context(tmp_path, f"FROM {name}\nRUN uname -m > /arch\n")
    pybuild("build", "-t", "plain:1", ctx, env=fresh)
    assert pybuild("run", "--rm", "--network", "none", "plain:1", "cat", "/arch", env=fresh).stdout == "x86_64\n"
    # a later pull of the other platform adds its image to the same index; the name stays on it
    pybuild("pull", "--platform", "linux/arm64", name, env=fresh)
    doc = json.loads(pybuild("inspect", "--platform", "linux/arm64", name, env=fresh).stdout)[0]
    assert doc["Architecture"] == "arm64" and doc["Index"]["Digest"] == index_digest
    assert doc["Index"]["Pulled"] == ["linux/amd64", "linux/arm64"]
    assert len(pybuild("images", "-q", env=fresh).stdout.split()) == 2  # the index and plain:1
    # now whole: pushed byte for byte (the registry's index digest again)
    pybuild("push", other, env=fresh)
    assert _raw_manifest(registry.host, "mp/partcopy", "1") == served
    # a pull by the index's digest keeps it too (untagged), found by that digest
    by_digest = {"PYBUILD_ROOT": str(tmp_path / "by-digest")}
    pybuild("pull", f"{name.rsplit(':', 1)[0]}@{index_digest}", env=by_digest)
    doc = json.loads(pybuild("inspect", f"{name.rsplit(':', 1)[0]}@{index_digest}", env=by_digest).stdout)[0]
    assert doc["Index"]["Digest"] == index_digest and doc["Index"]["Pulled"] == ["linux/amd64"]
    # rmi removes the index with its images; prune then frees their blobs
    pybuild("rmi", name, other, env=fresh)
    assert len(pybuild("images", "-q", env=fresh).stdout.split()) == 1
    pybuild("prune", "-f", env=fresh)
    arm_manifest = doc["Index"]["Manifests"][1]
    assert not (tmp_path / "fresh" / "blobs" / "sha256" / arm_manifest.split(":")[1]).exists()
    assert pybuild("run", "--rm", "--network", "none", "plain:1", "cat", "/arch", env=fresh).stdout == "x86_64\n"


@requires_tool("docker-registry")
def test_from_a_registry_index_keeps_a_partial_index_and_adds_foreign_images(env: dict[str, str], registry,  # noqa: ANN001
                                                                               tmp_path: Path) -> None:
    name = f"{registry.host}/mp/frombase:1"
    pybuild("tag", "busybox:multi", name, env=env)
    pybuild("push", name, env=env)
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh")}
    ctx = _context(tmp_path, f"FROM {name}\nRUN uname -m > /arch\n")
    pybuild("build", "-t", "plain:1", ctx, env=fresh)  # the pull for FROM keeps the index, this machine's image
    doc = json.loads(pybuild("inspect", name, env=fresh).stdout)[0]
    assert doc["Index"]["Pulled"] == ["linux/amd64"]
    pybuild("build", "--platform", "linux/arm64", "-t", "arm:1", ctx, env=fresh)  # pulls the arm64 image into it
    doc = json.loads(pybuild("inspect", "--platform", "linux/arm64", name, env=fresh).stdout)[0]
    assert doc["Architecture"] == "arm64" and doc["Index"]["Pulled"] == ["linux/amd64", "linux/arm64"]
    assert pybuild("run", "--rm", "--network", "none", "arm:1", "cat", "/arch", env=fresh).stdout == "aarch64\n"


def _ctx_dir(path: Path, dockerfile: str) -> str:
    path.mkdir()
    return _context(path, dockerfile)


def _last_record(store_env: dict[str, str]) -> dict:
    """The newest build record of a store (docs/build-records.md)."""
    builds = Path(store_env["PYBUILD_ROOT"]) / "builds"
    return json.loads(max(builds.glob("*.json"), key=lambda p: p.name).read_text())


def _fresh(env: dict[str, str], path: Path) -> dict[str, str]:
    """A copy of the module's store (the busybox bases, none of the caller's builds yet)."""
    from tests.builder.store_helpers import clone_store

    return {"PYBUILD_ROOT": str(clone_store(Path(env["PYBUILD_ROOT"]), path))}


@requires_tool("docker-registry")
def test_cache_to_and_from_carries_every_platforms_steps(env: dict[str, str], registry,  # noqa: ANN001
                                                         tmp_path: Path) -> None:
    """--cache-to of a two-platform build (a directory and the registry, mode=max): a fresh store
    importing either gets every step of both platforms as a hit and runs nothing; a cache of one
    platform's build gives the other platform's RUN no hit."""
    import uuid

    token = uuid.uuid4().hex  # no other store can have these keys
    ctx = Path(_ctx_dir(tmp_path / "ctx", "FROM busybox:multi\nARG TARGETARCH\nCOPY f /f\n"
                                          "RUN cat /f > /g && uname -m >> /g && echo ran-$TARGETARCH\n"))
    (ctx / "f").write_text(token)
    stores = {name: _fresh(env, tmp_path / name) for name in ("local", "registry", "one-platform")}
    both = ("--platform", "linux/amd64,linux/arm64")
    ref = f"{registry.host}/mpcache/{token[:8]}:cache"
    first = pybuild("build", "--progress", "plain", *both, "-t", "c:1", "--cache-to",
                    f"type=local,dest={tmp_path / 'cache'},mode=max", "--cache-to", f"type=registry,ref={ref},mode=max",
                    str(ctx), env=env).stderr
    assert "ran-amd64" in first and "ran-arm64" in first
    built = _last_record(env)
    assert {s["platform"] for s in built["steps"]} == {"linux/amd64", "linux/arm64"}
    for name, spec in (("local", f"type=local,src={tmp_path / 'cache'}"), ("registry", ref)):
        out = pybuild("build", "--progress", "plain", *both, "-t", "c:1", "--cache-from", spec, str(ctx),
                      env=stores[name]).stderr
        assert "ran-amd64" not in out and "ran-arm64" not in out, out  # no step ran
        record = _last_record(stores[name])
        assert [(s["platform"], s["instruction"], s["cache"]) for s in record["steps"]] == \
               [(s["platform"], s["instruction"], "hit") for s in built["steps"]], name
        layers = lambda r: [(s["platform"], (s["layer"] or {}).get("diff_id")) for s in r["steps"]]  # noqa: E731
        assert layers(record) == layers(built), name  # the same layers, platform by platform
        assert (_files(stores[name], "c:1", "linux/arm64", tmp_path / name) / "g").read_text() == token + "aarch64\n"
    # the amd64 build's cache: the arm64 RUN (same parent files, same command) must not be served from it
    pybuild("build", "--platform", "linux/amd64", "--cache-to", f"type=local,dest={tmp_path / 'amd'},mode=max",
            str(ctx), env=_fresh(env, tmp_path / "amd-store"))
    out = pybuild("build", "--progress", "plain", *both, "-t", "c:1", "--cache-from",
                  f"type=local,src={tmp_path / 'amd'}", str(ctx), env=stores["one-platform"]).stderr
    assert "ran-arm64" in out and "ran-amd64" not in out, out
    runs = {s["platform"]: s["cache"] for s in _last_record(stores["one-platform"])["steps"] if s["kind"] == "RUN"}
    assert runs == {"linux/amd64": "hit", "linux/arm64": "miss"}


def test_explain_and_analyze_pair_a_multi_platform_builds_steps_by_platform(env: dict[str, str],
                                                                            tmp_path: Path) -> None:
    """Both platforms' steps share their stages' indexes: explain pairs each step with the same
    platform's step of the earlier build, and analyze of one platform's image names its own steps."""
    ctx = _ctx_dir(tmp_path / "ctx", "FROM busybox:multi\nARG TARGETARCH V\nRUN echo $V-$TARGETARCH > /v\n")
    store = _fresh(env, tmp_path / "store")

    def build(value: str, platforms: str) -> dict:
        pybuild("build", "--platform", platforms, "--build-arg", f"V={value}", "-t", "ex:1", ctx, env=store)
        explained = json.loads(pybuild("explain", "--json", env=store).stdout)
        return {s["platform"]: s["reasons"] for s in explained["steps"] if s["instruction"].startswith("RUN")}

    build("1", "linux/arm64")
    assert build("2", "linux/amd64,linux/arm64") == {  # a single-platform build's steps pair by its platform
        "linux/arm64": ["build-arg V changed 1 -> 2"],
        "linux/amd64": ["a new step (no earlier build of this Dockerfile had it)"]}
    assert build("3", "linux/amd64,linux/arm64") == {"linux/arm64": ["build-arg V changed 2 -> 3"],
                                                     "linux/amd64": ["build-arg V changed 2 -> 3"]}
    text = pybuild("explain", env=store).stdout
    assert " [linux/amd64 stage-0 2/2]" in text and " [linux/arm64 stage-0 2/2]" in text, text
    record = _last_record(store)
    run_ids = {s["platform"]: s["id"] for s in record["steps"] if s["kind"] == "RUN"}
    page = tmp_path / "arm.html"
    pybuild("analyze", "--platform", "linux/arm64", "--html", str(page), "ex:1", env=store)
    html = page.read_text()
    assert f"(build {record['id']})" in html  # the multi-platform build that made this image
    assert f"step #{run_ids['linux/arm64']} line 3" in html and f"step #{run_ids['linux/amd64']} line 3" not in html


def test_jobs_counts_the_stages_of_every_platform(env: dict[str, str], tmp_path: Path) -> None:
    """`--jobs 1` with two platforms of two independent stages each: never two stages at once."""
    ctx = _ctx_dir(tmp_path / "ctx", "FROM busybox:multi AS a\nRUN echo a > /a\nFROM busybox:multi AS b\n"
                                     "RUN echo b > /b\nFROM busybox:multi\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n")
    store = _fresh(env, tmp_path / "store")
    pybuild("build", "--jobs", "1", "--platform", "linux/amd64,linux/arm64", ctx, env=store)
    steps = [s for s in _last_record(store)["steps"] if s["kind"] != "FROM"]
    spans = sorted((min(s["started"] for s in group), max(s["started"] + s["duration"] for s in group))
                   for group in ([s for s in steps if (s["platform"], s["stage_index"]) == key]
                                 for key in {(s["platform"], s["stage_index"]) for s in steps}))
    assert len(spans) == 6
    assert all(end <= nxt_start + 0.001 for (_, end), (nxt_start, _) in zip(spans, spans[1:])), spans


def test_emulated_platforms_build_after_the_native_ones(env: dict[str, str], tmp_path: Path) -> None:
    """Emulated platforms' steps start once the native platforms are built (listed first or not); a native
    platform that fails stops the build before any emulated step runs."""
    ctx = _ctx_dir(tmp_path / "ctx", "FROM busybox:multi\nRUN echo one > /1\nRUN echo two > /2\n")
    store = _fresh(env, tmp_path / "store")
    pybuild("build", "--platform", "linux/arm64,linux/amd64", ctx, env=store)
    steps = _last_record(store)["steps"]
    native_end = max(s["started"] + s["duration"] for s in steps if s["platform"] == "linux/amd64")
    emulated = [s["started"] for s in steps if s["platform"] == "linux/arm64"]
    assert len(emulated) == 3 and min(emulated) >= native_end - 0.001, steps
    bad = _ctx_dir(tmp_path / "bad", "FROM busybox:multi\nRUN [ $(uname -m) != x86_64 ] && echo ran-on-$(uname -m)\n")
    out = pybuild("build", "--progress", "plain", "--platform", "linux/arm64,linux/amd64", bad, env=store,
                  check=False)
    assert out.returncode != 0 and "ran-on-aarch64" not in out.stderr, out.stderr
    assert not [s for s in _last_record(store)["steps"] if s["platform"] == "linux/arm64" and s["kind"] == "RUN"]
