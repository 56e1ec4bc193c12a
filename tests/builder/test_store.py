"""The content-addressed store: blobs, layers, images, tags, snapshots, prune."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import pytest

from builder.cache.keys import BuildCache
from builder.cache.policy import build_cache_roots
from builder.errors import DigestMismatchError, InvalidReferenceError, StoreError
from builder.oci import mutate
from builder.oci.image import EMPTY, validate_image
from builder.oci.model import ContainerConfig, Digest, History, chain_ids
from builder.oci.reference import normalize_tag
from builder.store import Store
from builder.util.paths import default_root
from tests.conftest import requires_root


def test_default_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x"
    monkeypatch.delenv("PYBUILD_ROOT")
    assert default_root() == (Path("/var/lib/pybuild") if os.geteuid() == 0 else
                              Path.home() / ".local/share/pybuild")


def test_blob_put_is_content_addressed_and_checked(store_root: Path) -> None:
    store = Store.open()
    d = store.put_bytes(b"hello")
    assert d == Digest.of(b"hello") and store.read_blob(d) == b"hello"
    with pytest.raises(DigestMismatchError):
        store.put_stream(io.BytesIO(b"evil"), expected=Digest.of(b"good"))
    assert not store.has_blob(Digest.of(b"evil"))
    assert list((store_root / "tmp").iterdir()) == []


def test_corrupt_blob_is_detected_on_read(store_root: Path) -> None:
    store = Store.open()
    d = store.put_bytes(b"payload")
    store.blob_path(d).write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError):
        store.read_blob(d)


@pytest.mark.parametrize("name,expected", [
    ("busybox", "busybox:latest"), ("a/b:1.0", "a/b:1.0"), ("localhost:5000/x", "localhost:5000/x:latest"),
    ("docker.io/library/alpine:3", "alpine:3"), ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
])
def test_normalize_tag(name: str, expected: str) -> None:
    assert normalize_tag(name) == expected


@pytest.mark.parametrize("name", ["UPPER", "a:b:c", "x@sha256:00", "", "a/:t", "a:-bad"])
def test_bad_tag_names_are_clear_errors(name: str) -> None:
    with pytest.raises(InvalidReferenceError):
        normalize_tag(name)


def _image_with_layer(store: Store, upper: Path):
    rec = store.commit_dir(upper)
    img = mutate.append_layers(EMPTY, store.layer(rec), history=[History(created_by="test")])
    return mutate.with_created(mutate.with_config(img, ContainerConfig(cmd=("sh",))), 0)


def test_put_resolve_tag_untag(store_root: Path, tmp_path: Path) -> None:
    store = Store.open()
    upper = tmp_path / "up"
    upper.mkdir()
    (upper / "f").write_text("x")
    img = _image_with_layer(store, upper)
    iid = store.put_image(img, ["app:1"])
    got = store.resolve("app:1")
    validate_image(got)
    assert got.id == iid and got.digest == img.digest
    assert store.resolve(iid.hex[:8]).id == iid
    assert store.resolve(f"app@{img.digest}").id == iid
    assert store.tag("app:2", "app:1") == "app:2"
    assert set(store.tags()) == {"app:1", "app:2"}
    assert store.untag("app:1") == iid
    with pytest.raises(StoreError, match="not in the store"):
        store.resolve("app:1")
    with pytest.raises(StoreError):
        store.untag("nope")


def test_prune_keeps_tagged_and_cache_rooted_content(store_root: Path, tmp_path: Path) -> None:
    store = Store.open()
    ids = []
    for i in range(3):
        upper = tmp_path / f"up{i}"
        upper.mkdir()
        (upper / "f").write_text(str(i))
        ids.append(store.put_image(_image_with_layer(store, upper), [f"img:{i}"]))
    store.untag("img:1")
    store.untag("img:2")
    (store_root / "cache" / "keys" / "ab").mkdir(parents=True)
    (store_root / "cache" / "keys" / "ab" / "ab01.json").write_text(json.dumps({"image": ids[2]}))
    # what is not a cache entry roots nothing: the memo, and the files of a RUN cache mount
    for path in (store_root / "cache" / "memo" / "m.json", store_root / "cache" / "mounts" / "pip" / "x" / "lock.json"):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"image_id": ids[1]}))
    cache = BuildCache(store_root)
    kept_chain = chain_ids(store.image_by_id(ids[0]).config().diff_ids)[-1]
    cache.put_copy_result("sha256:" + "1" * 64, kept_chain, {})
    cache.put_copy_result("sha256:" + "2" * 64, "sha256:" + "f" * 64, {})  # its snapshot is gone
    (store_root / "tmp" / "blob-leftover").write_bytes(b"junk")
    report = store.prune(roots=[build_cache_roots(store_root)])
    assert report.images == [ids[1]] and report.blobs >= 3 and report.temp == 1
    assert cache.copy_result("sha256:" + "1" * 64) == (kept_chain, {})
    assert cache.copy_result("sha256:" + "2" * 64) is None
    assert store.resolve("img:0").id == ids[0]
    assert store.image_by_id(ids[2]).id == ids[2]
    with pytest.raises(StoreError):
        store.image_by_id(ids[1])
    for blob in (store_root / "blobs" / "sha256").iterdir():
        store.read_blob("sha256:" + blob.name)


@requires_root
def test_snapshots_are_shared_overlay_dirs(busybox_store: Path) -> None:
    store = Store.open()
    img = store.resolve("busybox")
    dirs = store.rootfs_dirs(img)
    assert len(dirs) == 1 and (dirs[0] / "bin" / "busybox").is_file()
    assert os.readlink(dirs[0] / "bin" / "sh") == "/bin/busybox"
    assert store.rootfs_dirs(img) == dirs
    assert list((busybox_store / "tmp").iterdir()) == []


def test_prune_waits_for_writers_holding_a_lease(store_root: Path) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from builder.store import Store\n"
                               "s = Store.open(sys.argv[1])\nwith s.lease():\n print('held', flush=True)\n"
                               " time.sleep(30)", str(store_root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StoreError, match="busy"):
            Store.open().prune(wait=False)
    finally:
        holder.kill()
        holder.wait()
    Store.open().prune(wait=False)  # the lock died with its holder


def test_layer_size_cap_from_the_environment(store_root: Path, monkeypatch: pytest.MonkeyPatch,
                                              busybox_tar: Path) -> None:
    from builder.errors import ImageFormatError

    monkeypatch.setenv("PYBUILD_MAX_LAYER_SIZE", "100000")
    with open(busybox_tar, "rb") as f, pytest.raises(ImageFormatError, match="larger than the limit"):
        Store.open().commit_tar(f)
    assert list((store_root / "blobs" / "sha256").iterdir()) == []


def test_unpack_checks_the_diff_id(store_root: Path, tmp_path: Path) -> None:
    store = Store.open()
    upper = tmp_path / "up"
    upper.mkdir()
    (upper / "f").write_bytes(b"A" * 1000)
    rec = store.commit_dir(upper, compression="uncompressed")
    blob = store.blob_path(rec.digest)
    blob.write_bytes(blob.read_bytes().replace(b"A" * 1000, b"B" * 1000))  # same size, other content
    (tmp_path / "out").mkdir()
    with pytest.raises(DigestMismatchError, match="not its diff_id"):
        store.unpack_layer(store.layer(rec), tmp_path / "out")


def test_concurrent_snapshots_of_one_chain_agree(busybox_store: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = Store.open()
    image = store.resolve("busybox")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: Store.open().rootfs_dirs(image), range(4)))
    assert all(r == results[0] for r in results) and (results[0][0] / "bin" / "busybox").is_file()
    assert list((busybox_store / "tmp").iterdir()) == []  # the losers cleaned up after themselves


@requires_root
def test_prune_keeps_what_a_container_uses(busybox_store: Path) -> None:
    store = Store.open()
    image = store.resolve("busybox")
    dirs = store.rootfs_dirs(image)
    store.untag("busybox")
    state = busybox_store / "containers" / "c1"
    state.mkdir(parents=True)
    (state / "config.json").write_text(json.dumps({"image": image.id, "lower": [str(d) for d in dirs]}))
    report = store.prune()
    assert report.images == [] and report.snapshots == 0 and all(d.is_dir() for d in dirs)
    assert store.image_by_id(image.id).id == image.id
    (state / "config.json").unlink()
    state.rmdir()
    report = store.prune()
    assert report.images == [image.id] and report.snapshots == 1 and not dirs[0].exists()


def test_commit_dir_can_keep_the_upperdir_as_the_snapshot(store_root: Path) -> None:
    store = Store.open()
    upper = Path(tempfile.mkdtemp(dir=store.tmp_dir()))
    (upper / "f").write_text("x")
    base = Digest.of(b"base layer")
    rec = store.commit_dir(upper, snapshot_parent=[base])
    from builder.oci.model import chain_ids

    snap = store.snapshot_path(chain_ids([base, rec.diff_id])[-1])
    assert not upper.exists() and (snap / "f").read_text() == "x"


def test_images_names_an_unreadable_image_instead_of_hiding_it(busybox_store: Path) -> None:
    from tests.conftest import pybuild

    store = Store.open(busybox_store)
    image = store.resolve("busybox")
    os.chmod(store.blob_path(image.id), 0o600)
    with open(store.blob_path(image.id), "ab") as f:
        f.write(b"corruption")
    proc = pybuild("images")
    assert "busybox" not in proc.stdout
    assert f"warning: image {image.id[7:19]} (busybox:latest) is unreadable" in proc.stderr, proc.stderr
    assert "is corrupt" in proc.stderr


def test_force_compression_converts_layers_stored_with_another_codec(busybox_store: Path, tmp_path: Path) -> None:
    from builder.oci import compress

    store = Store.open(busybox_store)
    base = store.resolve("busybox")  # imported: a gzip layer
    assert compress.codec_of(base.layers()[0].media_type) == "gzip"
    assert store.compressed_image(base, "zstd").digest == base.digest  # without force: kept as it is
    for codec in ("zstd", "uncompressed"):
        forced = store.compressed_image(base, codec, force=True)
        [layer] = forced.layers()
        assert compress.codec_of(layer.media_type) == codec and layer.diff_id == base.layers()[0].diff_id
        assert forced.id == base.id and forced.digest != base.digest
        assert store.compressed_image(forced, codec, force=True).digest == forced.digest  # nothing left to do
        dest = tmp_path / codec
        dest.mkdir()
        store.unpack_layer(layer, dest)  # the diff_id is checked on the way
        assert (dest / "bin" / "busybox").is_file()
    assert store.compressed_layer(base.layers()[0], "zstd", force=True) == \
        store.compressed_layer(base.layers()[0], "zstd", force=True)  # made once, remembered

