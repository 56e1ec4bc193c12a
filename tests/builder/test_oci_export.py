"""Build outputs: rootfs directory and tar, OCI layouts (added to), docker archives; all deterministic."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from builder.oci import mutate
from builder.oci.archive import export_rootfs_dir, export_rootfs_tar, write_docker_archive
from builder.oci.layout import LayoutSource, read_oci_layout, write_oci_archive, write_oci_layout
from builder.oci.model import Digest, History
from builder.store import Store
from tests.conftest import requires_root


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


def _multiplatform_layout(store: Store, dest: Path, archs: list[str]) -> Path:
    """An OCI layout whose index.json names one nested index of busybox-layer images, one per arch."""
    import json

    from builder.oci.model import ContainerConfig, Descriptor, ImageConfig, Index, Manifest, Platform
    from builder.oci.model import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST

    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer = store.resolve("busybox").layers()[0]
    (blobs / layer.digest.hex).write_bytes(store.blob_path(layer.digest).read_bytes())

    def put(data: bytes) -> Digest:
        (blobs / Digest.of(data).hex).write_bytes(data)
        return Digest.of(data)

    entries = []
    for arch in archs:
        raw = ImageConfig(architecture=arch, diff_ids=(layer.diff_id,),
                          config=ContainerConfig(labels={"arch": arch})).to_json()
        manifest = Manifest(Descriptor(OCI_CONFIG, put(raw), len(raw)),
                            (Descriptor(layer.media_type, layer.digest, layer.size),)).to_json()
        entries.append(Descriptor(OCI_MANIFEST, put(manifest), len(manifest), platform=Platform("linux", arch)))
    nested = Index(tuple(entries)).to_json()
    top = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_INDEX, "digest": put(nested), "size": len(nested),
                                              "annotations": {"org.opencontainers.image.ref.name": "multi:1"}}]}
    (dest / "index.json").write_text(json.dumps(top))
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return dest


def test_load_multiplatform_index_picks_the_host_or_platform_and_never_another(busybox_store: Path,
                                                                            tmp_path: Path) -> None:
    from builder.oci.platform import host as host_platform
    from tests.conftest import pybuild

    store = Store.open(busybox_store)
    host = host_platform().architecture
    foreign = [a for a in ("s390x", "ppc64le", "riscv64") if a != host][:2]
    both = _multiplatform_layout(store, tmp_path / "both", [foreign[0], host])
    pybuild("load", "-i", str(both))
    assert store.resolve("multi:1").config().architecture == host
    pybuild("load", "-i", str(both), "--platform", f"linux/{foreign[0]}")
    assert store.resolve("multi:1").config().architecture == foreign[0]

    store.untag("multi:1")
    alien = _multiplatform_layout(store, tmp_path / "alien", foreign)
    proc = pybuild("load", "-i", str(alien), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{alien}: no image for platform linux/{host}" in proc.stderr and foreign[1] in proc.stderr, proc.stderr
    assert "multi:1" not in store.tags()  # nothing tagged with another machine's image


def test_load_of_a_truncated_archive_is_a_clear_error_naming_the_users_file(busybox_store: Path,
                                                                         tmp_path: Path) -> None:
    import gzip

    from tests.conftest import pybuild

    full = tmp_path / "full.tar"
    pybuild("save", "-o", str(full), "busybox")
    data = full.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:3000])  # ends inside a member's data
    (tmp_path / "cut.tar.gz").write_bytes(gzip.compress(data[:3000], mtime=0))  # spooled through a temp file
    (tmp_path / "cutgz.tar.gz").write_bytes(gzip.compress(data, mtime=0)[:5000])  # the gzip stream itself ends
    cases = [(["-i", str(tmp_path / n)], None, n) for n in ("cut.tar", "cut.tar.gz", "cutgz.tar.gz")]
    cases.append(([], data[:3000], "stdin"))
    for args, stdin, name in cases:
        proc = pybuild("load", *args, input=stdin, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(str(tmp_path / name) if args else "stdin:"), proc.stderr
        assert "truncated" in proc.stderr, proc.stderr
    assert list((busybox_store / "tmp").iterdir()) == []  # no spooled copy left behind


def test_unwritable_destinations_are_named_not_their_temp_files(busybox_store: Path, tmp_path: Path) -> None:
    import pytest

    from builder.errors import StoreError
    from tests.conftest import pybuild

    out = tmp_path / "out"
    out.mkdir()
    for dest, why in ((out / "missing" / "x.tar", "No such file or directory"),
                      (out, "it is a directory")):
        for fmt in ("docker", "oci"):
            proc = pybuild("save", "--format", fmt, "-o", str(dest), "busybox", check=False)
            assert proc.returncode == 1 and proc.stderr.startswith(f"cannot write {dest}: {why}"), proc.stderr
    store = Store.open(busybox_store)
    with pytest.raises(StoreError, match=f"cannot write {out / 'missing' / 'r.tar'}: No such file"):
        export_rootfs_tar(store.resolve("busybox"), out / "missing" / "r.tar", store.tmp_dir())
    assert list(out.iterdir()) == []  # no temp files left anywhere


@requires_root
def test_a_device_fifo_or_symlink_destination_is_written_not_replaced(busybox_store: Path, tmp_path: Path) -> None:
    import stat
    import threading

    from tests.conftest import pybuild

    out = tmp_path / "out"
    out.mkdir()
    null = out / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null: `save -o /dev/null`
    fifo = out / "fifo"
    os.mkfifo(fifo)  # `save -o >(gzip > x)`
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    (out / "real.tar").write_bytes(b"")
    (out / "link.tar").symlink_to("real.tar")
    for dest in (null, fifo, out / "link.tar"):
        pybuild("save", "-o", str(dest), "busybox")
    reader.join(30)
    assert stat.S_ISCHR(null.stat().st_mode) and stat.S_ISFIFO(fifo.stat().st_mode)
    assert (out / "link.tar").is_symlink()
    real = (out / "real.tar").read_bytes()
    assert got and got[0] == real and tarfile.open(fileobj=io.BytesIO(real)).getmember("manifest.json")
    assert sorted(p.name for p in out.iterdir()) == ["fifo", "link.tar", "null", "real.tar"]  # no temp files


def test_rootfs_dir_export_follows_a_symlinked_destination_and_refuses_a_file(busybox_store: Path,
                                                                            tmp_path: Path) -> None:
    import pytest

    from builder.errors import StoreError

    image = Store.open(busybox_store).resolve("busybox")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")  # e.g. dest=out where out links to a bigger disk
    export_rootfs_dir(image, tmp_path / "link")
    assert (tmp_path / "real" / "bin" / "busybox").is_file() and (tmp_path / "link").is_symlink()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=f"cannot write {tmp_path / 'file'}: it is not a directory"):
        export_rootfs_dir(image, tmp_path / "file")


def test_loading_a_docker_archive_of_a_stored_image_changes_nothing(busybox_store: Path, tmp_path: Path) -> None:
    """A layer the store has is neither compressed again nor re-recorded: a built image (uncompressed
    layers) keeps its manifest digest, and the build cache keeps finding the same blob."""
    from builder.transfer import load as load_archive

    from tests.builder.store_helpers import built_image

    store = Store.open(busybox_store)
    image, rec = built_image(store, tmp_path / "upper", 3000)
    store.put_image(image, ["built:1"])
    before = (store.resolve("built:1").digest, sorted(os.listdir(busybox_store / "blobs" / "sha256")),
              store.layer_record(rec.diff_id))
    write_docker_archive([(image, ["built:1"])], tmp_path / "d.tar")
    assert load_archive(store, tmp_path / "d.tar") == [(image.id, ["built:1"])]
    after = (store.resolve("built:1").digest, sorted(os.listdir(busybox_store / "blobs" / "sha256")),
             store.layer_record(rec.diff_id))
    assert after == before
