"""What we write is read by other tools: oci-image-tool, umoci, skopeo, podman (real binaries)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from builder.oci import mutate
from builder.oci.archive import export_rootfs_dir, write_docker_archive
from builder.oci.layout import write_oci_archive, write_oci_layout
from builder.transfer import load as load_archive
from builder.oci.model import ContainerConfig, History
from builder.store import Store
from tests.conftest import requires_root, requires_tool


def _tree(root: Path) -> dict[str, tuple]:
    """Path -> (type, mode, uid, gid, size or link target) for every entry under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            extra = os.readlink(p) if stat.S_ISLNK(st.st_mode) else st.st_size if stat.S_ISREG(st.st_mode) else 0
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


@pytest.fixture
def app_image(busybox_store: Path, tmp_path: Path):
    """busybox + one layer: adds /hello.txt (0640, uid 33), a hardlink, deletes /etc/os-release."""
    store = Store.open()
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "hello.txt").write_text("hello from a pybuild layer\n")
    os.chmod(upper / "hello.txt", 0o640)
    os.link(upper / "hello.txt", upper / "hello-link.txt")
    if os.geteuid() == 0:
        os.chown(upper / "hello.txt", 33, 33)
        os.mknod(upper / "etc" / "os-release", stat.S_IFCHR | 0o600, 0)  # overlay whiteout
    rec = store.commit_dir(upper)
    base = store.resolve("busybox")
    image = mutate.append_layers(base, store.layer(rec), history=[History(created_by="COPY hello.txt /")])
    image = mutate.with_config(image, ContainerConfig(cmd=("cat", "/hello.txt"),
                                                      env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)))
    image = mutate.with_created(image, 0)
    store.put_image(image, ["app:1"])
    return store, store.resolve("app:1")


@requires_tool("oci-image-tool")
def test_oci_image_tool_validates_layout_dir_and_archive(app_image, tmp_path: Path) -> None:
    store, image = app_image
    write_oci_layout(image, tmp_path / "layout", tags=["app:1"])
    proc = subprocess.run(["oci-image-tool", "validate", "--type", "image", str(tmp_path / "layout")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    write_oci_archive([(image, ["app:1"])], tmp_path / "app.tar")
    unpacked = tmp_path / "from-tar"
    unpacked.mkdir()
    with tarfile.open(tmp_path / "app.tar") as tf:
        tf.extractall(unpacked, filter="data")
    proc = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=app:1", str(unpacked)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@requires_tool("oci-image-tool", "umoci")
def test_oci_exports_of_a_docker_schema2_image_are_oci(app_image, tmp_path: Path) -> None:
    """An image pulled as Docker schema 2 is saved to an OCI layout with OCI media types (as skopeo
    does): oci-image-tool and umoci accept it; config and layer blobs, so the image id, are kept."""
    from builder.oci.image import BasicImage
    from builder.oci.layout import LayoutSource, read_oci_layout
    from builder.oci.model import DOCKER_MANIFEST, OCI_MANIFEST
    from tests.conftest import pybuild

    store, image = app_image
    docker = BasicImage(image.raw_config(), tuple(image.layers()), DOCKER_MANIFEST)
    store.put_image(docker, ["docker-app:1"])
    assert store.resolve("docker-app:1").manifest().media_type == DOCKER_MANIFEST
    pybuild("save", "--format", "oci", "-o", str(tmp_path / "d.tar"), "docker-app:1")
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(tmp_path / "d.tar") as tf:
        tf.extractall(layout, filter="data")
    proc = subprocess.run(["oci-image-tool", "validate", "--type", "image", str(layout)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(["umoci", "unpack", "--image", f"{layout}:docker-app:1", str(tmp_path / "bundle")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bundle" / "rootfs" / "hello.txt").read_text() == "hello from a pybuild layer\n"
    [(got, _)] = read_oci_layout(LayoutSource(layout))
    assert got.manifest().media_type == OCI_MANIFEST and got.id == image.id


@requires_root
@requires_tool("umoci")
def test_umoci_unpack_matches_our_rootfs(app_image, tmp_path: Path) -> None:
    store, image = app_image
    write_oci_layout(image, tmp_path / "layout", tags=["app:1"])
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'layout'}:app:1", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    export_rootfs_dir(image, tmp_path / "ours")
    theirs, ours = _tree(tmp_path / "bundle" / "rootfs"), _tree(tmp_path / "ours")
    assert theirs == ours
    assert "etc/os-release" not in ours and "etc/hostname" in ours and ours["hello.txt"][1:4] == (0o640, 33, 33)
    assert (tmp_path / "ours" / "hello.txt").stat().st_ino == (tmp_path / "ours" / "hello-link.txt").stat().st_ino


@requires_tool("skopeo")
def test_skopeo_round_trip_oci_to_docker_and_back(app_image, tmp_path: Path) -> None:
    store, image = app_image
    write_oci_archive([(image, ["app:1"])], tmp_path / "oci.tar")
    subprocess.run(["skopeo", "copy", f"oci-archive:{tmp_path / 'oci.tar'}:app:1",
                    f"docker-archive:{tmp_path / 'docker.tar'}:app:copied"], check=True, capture_output=True)
    subprocess.run(["skopeo", "copy", f"docker-archive:{tmp_path / 'docker.tar'}",
                    f"oci-archive:{tmp_path / 'back.tar'}:app:back"], check=True, capture_output=True)
    other = Store.open(tmp_path / "other")
    [(image_id, _)] = load_archive(other, tmp_path / "docker.tar")
    assert image_id == image.id  # OCI -> docker keeps the config byte for byte, so the image id
    [(back_id, _)] = load_archive(other, tmp_path / "back.tar")
    back = other.image_by_id(back_id)  # docker -> OCI: skopeo rewrites the config JSON, same content
    assert (back.config().config, back.config().diff_ids, back.config().history) == \
        (image.config().config, image.config().diff_ids, image.config().history)
    assert [l.diff_id for l in back.layers()] == [l.diff_id for l in image.layers()]
    # and skopeo reads our own docker-archive
    write_docker_archive([(image, ["app:1"])], tmp_path / "ours-docker.tar")
    proc = subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{tmp_path / 'ours-docker.tar'}"],
                          check=True, capture_output=True, text=True)
    assert '"cat"' in proc.stdout and "/hello.txt" in proc.stdout


def test_save_load_round_trip_keeps_digests(app_image, tmp_path: Path) -> None:
    store, image = app_image
    write_oci_archive([(image, ["app:1"])], tmp_path / "oci.tar")
    write_docker_archive([(image, ["app:1"])], tmp_path / "docker.tar")
    a, b = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    assert load_archive(a, tmp_path / "oci.tar") == [(image.id, ["app:1"])]
    assert a.resolve("app:1").digest == image.digest  # the manifest itself, byte for byte
    assert load_archive(b, tmp_path / "docker.tar") == [(image.id, ["app:1"])]
    got = b.resolve("app:1")
    assert got.raw_config() == image.raw_config()
    assert [l.diff_id for l in got.layers()] == [l.diff_id for l in image.layers()]


@requires_root
@requires_tool("podman", "runc")
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_podman_loads_and_runs_our_archives(app_image, tmp_path: Path, fmt: str,
                                            request: pytest.FixtureRequest) -> None:
    store, image = app_image
    archive = tmp_path / f"{fmt}.tar"
    (write_docker_archive if fmt == "docker" else write_oci_archive)([(image, ["app:1"])], archive)
    runroot = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))  # podman wants a runroot under 50 characters
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    podman = ["podman", "--root", str(tmp_path / "pm-root"), "--runroot", str(runroot),
              "--runtime", "runc", "--storage-driver", "vfs", "--events-backend", "file"]
    load = subprocess.run([*podman, "load", "-i", str(archive)], capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, load.stderr
    assert "app:1" in load.stdout
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none"]
    run = subprocess.run([*podman, "run", "--rm", *limits, "localhost/app:1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello from a pybuild layer\n"
    gone = subprocess.run([*podman, "run", "--rm", *limits, "localhost/app:1", "ls", "/etc/os-release"],
                          capture_output=True, text=True, timeout=120)
    assert gone.returncode != 0  # the whiteout hid busybox's /etc/os-release
