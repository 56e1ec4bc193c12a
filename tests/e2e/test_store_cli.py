"""The image commands through the CLI: import, images, tag, inspect, history, save, load, rmi, prune."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import pybuild


def test_import_images_tag_inspect_history(store_root: Path, busybox_tar: Path) -> None:
    image_id = pybuild("import", str(busybox_tar), "busybox:latest").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    pybuild("tag", "busybox", "mybox:1.0")
    out = pybuild("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {tuple(line.split()[:3]) for line in out[1:]}
    assert rows == {("busybox", "latest", image_id[7:19]), ("mybox", "1.0", image_id[7:19])}
    [doc] = json.loads(pybuild("inspect", "mybox:1.0").stdout)
    assert doc["Id"] == image_id and doc["RepoTags"] == ["busybox:latest", "mybox:1.0"]
    assert doc["Manifest"]["config"]["digest"] == image_id and len(doc["RootFS"]["diff_ids"]) == 1
    history = pybuild("history", image_id[7:15]).stdout.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"] and "pybuild import busybox.tar" in history[1]
    assert pybuild("images", "-q").stdout.split() == [image_id[7:19]]


def test_import_gzip_and_zstd_tars(store_root: Path, busybox_tar: Path, tmp_path: Path) -> None:
    gz = tmp_path / "gz" / busybox_tar.name  # same name: the name is in the history entry
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(busybox_tar.read_bytes(), mtime=0))
    a = pybuild("import", "-q", str(gz), "gz:1", env={"SOURCE_DATE_EPOCH": "0"}).stdout
    b = pybuild("import", "-q", str(busybox_tar), "plain:1", env={"SOURCE_DATE_EPOCH": "0"}).stdout
    assert a == b  # same content, same epoch: same image id
    assert "gz" in pybuild("images").stdout


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_then_load_into_another_store(store_root: Path, busybox_tar: Path, tmp_path: Path, fmt: str) -> None:
    image_id = pybuild("import", str(busybox_tar), "busybox").stdout.strip()
    pybuild("save", "-o", str(tmp_path / "x.tar"), "--format", fmt, "busybox")
    other = {"PYBUILD_ROOT": str(tmp_path / "other")}
    out = pybuild("load", "-i", str(tmp_path / "x.tar"), env=other).stdout
    assert out.strip() == "Loaded image: busybox:latest"
    [doc] = json.loads(pybuild("inspect", "busybox", env=other).stdout)
    assert doc["Id"] == image_id


def test_rmi_and_prune(store_root: Path, busybox_tar: Path) -> None:
    image_id = pybuild("import", str(busybox_tar), "a:1").stdout.strip()
    pybuild("tag", "a:1", "b:1")
    assert pybuild("rmi", "a:1").stdout.strip() == "Untagged: a:1"
    assert pybuild("rmi", "b:1").stdout.split() == ["Untagged:", "b:1", "Deleted:", image_id]
    out = pybuild("prune", "-f").stdout
    assert "Removed 0 images, 3 blobs" in out
    assert list((store_root / "blobs" / "sha256").iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["inspect", "nope:1"], "image 'nope:1' is not in the store"),
    (["tag", "nope", "x"], "is not in the store"),
    (["rmi", "nope"], "is not in the store"),
    (["history", "nope"], "is not in the store"),
    (["save", "-o", "/dev/null", "nope"], "is not in the store"),
    (["import", "/nonexistent.tar", "x"], "cannot read /nonexistent.tar"),
    (["load", "-i", "/nonexistent.tar"], "no such file"),
])
def test_errors_are_clear_and_without_traceback(store_root: Path, args: list[str], message: str) -> None:
    proc = pybuild(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr


def test_import_of_a_hostile_or_broken_tar_fails_cleanly(store_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"definitely not a tar" * 100)
    proc = pybuild("import", str(bad), "bad", check=False)
    assert proc.returncode == 1 and "not a tar archive" in proc.stderr and "Traceback" not in proc.stderr
    proc = pybuild("tag", "busybox", "UPPER", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert list((store_root / "blobs" / "sha256").iterdir()) == []  # nothing half-stored
    assert [p for p in (store_root / "tmp").iterdir()] == []


def test_load_a_layout_directory_made_by_skopeo(store_root: Path, busybox_tar: Path, tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo not installed")
    pybuild("import", str(busybox_tar), "busybox")
    pybuild("save", "-o", str(tmp_path / "d.tar"), "busybox")
    import subprocess

    subprocess.run(["skopeo", "copy", f"docker-archive:{tmp_path / 'd.tar'}", f"oci:{tmp_path / 'layout'}:bb:copy"],
                   check=True, capture_output=True)
    out = pybuild("load", "-i", str(tmp_path / "layout"), env={"PYBUILD_ROOT": str(tmp_path / "s2")}).stdout
    assert "Loaded image" in out


def test_import_with_changes(store_root: Path, busybox_tar: Path) -> None:
    pybuild("import", "-c", 'CMD ["sh", "-c", "echo hi"]', "-c", "ENV A=1", "-c", "EXPOSE 80", "-c", "USER 33",
            str(busybox_tar), "changed")
    [doc] = json.loads(pybuild("inspect", "changed").stdout)
    assert doc["Config"] == {"Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}},
                             "User": "33"}
    proc = pybuild("import", "-c", "RUN rm -rf /", str(busybox_tar), "bad", check=False)
    assert proc.returncode == 1 and "unsupported --change" in proc.stderr
    assert len(list((store_root / "blobs" / "sha256").iterdir())) == 3  # only the first image's blobs
