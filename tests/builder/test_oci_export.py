"""Build outputs: rootfs directory and tar, OCI layouts (added to), docker archives; all deterministic."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

from builder.oci import mutate
from builder.oci.archive import export_rootfs_dir, export_rootfs_tar, write_docker_archive
from builder.oci.layout import LayoutSource, read_oci_layout, write_oci_archive, write_oci_layout
from builder.oci.model import History
from builder.store import Store


def _image(store: Store, tmp_path: Path):
    upper = tmp_path / "upper"
    (upper / "app").mkdir(parents=True)
    (upper / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
    rec = store.commit_dir(upper, epoch=0)
    image = mutate.append_layers(store.resolve("busybox"), store.layer(rec), history=[History(created_by="COPY")])
    return mutate.with_created(image, 0)


def test_rootfs_exports(busybox_store: Path, tmp_path: Path) -> None:
    store = Store.open()
    image = _image(store, tmp_path)
    export_rootfs_dir(image, tmp_path / "rootfs")
    assert (tmp_path / "rootfs" / "app" / "run.sh").read_text() == "#!/bin/sh\necho run\n"
    assert os.readlink(tmp_path / "rootfs" / "bin" / "sh") == "/bin/busybox"
    export_rootfs_tar(image, tmp_path / "a.tar", tmp_dir=store.tmp_dir(), epoch=0)
    export_rootfs_tar(image, tmp_path / "b.tar", tmp_dir=store.tmp_dir(), epoch=0)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tf:
        names = set(tf.getnames())
    assert {"app/run.sh", "bin/busybox", "etc/passwd"} <= names
    assert list(store.tmp_dir().iterdir()) == []


def test_archives_are_deterministic(busybox_store: Path, tmp_path: Path) -> None:
    store = Store.open()
    image = _image(store, tmp_path)
    digests = set()
    for i in range(2):
        write_oci_archive([(image, ["app:1"])], tmp_path / f"oci{i}.tar")
        write_docker_archive([(image, ["app:1"])], tmp_path / f"docker{i}.tar")
        digests.add((hashlib.sha256((tmp_path / f"oci{i}.tar").read_bytes()).hexdigest(),
                     hashlib.sha256((tmp_path / f"docker{i}.tar").read_bytes()).hexdigest()))
    assert len(digests) == 1


def test_layout_dir_keeps_other_images_when_adding(busybox_store: Path, tmp_path: Path) -> None:
    store = Store.open()
    base = store.resolve("busybox")
    image = _image(store, tmp_path)
    write_oci_layout(base, tmp_path / "layout", tags=["busybox:latest"])
    write_oci_layout(image, tmp_path / "layout", tags=["app:1"])
    src = LayoutSource(tmp_path / "layout")
    got = {tuple(tags): img.id for img, tags in read_oci_layout(src)}
    assert got == {("busybox:latest",): base.id, ("app:1",): image.id}
