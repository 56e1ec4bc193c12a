"""`builder.containers.stored_image`, the fast image lookup of `pybuild run`, on hand-made store
files laid out as docs/store.md describes (the real store is compared in test_cli.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder.containers import RunOptions, stored_image, volume_mounts


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _store(root: Path, diff_ids: list[str], unpack: bool = True) -> str:
    config = json.dumps({"config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    image_id = _digest(config)
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / image_id[7:]).write_bytes(config)
    (root / "images.json").write_text(json.dumps({"images": {image_id: {"manifest": _digest(b"m")}},
                                                  "tags": {"app:1": image_id, "app:latest": image_id}}))
    chain = ""
    for d in diff_ids:
        chain = d if not chain else _digest(f"{chain} {d}".encode())
        if unpack:
            (root / "snapshots" / chain[7:]).mkdir(parents=True)
    return image_id


def test_tag_id_and_chain_ids(tmp_path: Path) -> None:
    diffs = [_digest(b"layer0"), _digest(b"layer1")]
    image_id = _store(tmp_path, diffs)
    second = _digest(f"{diffs[0]} {diffs[1]}".encode())  # OCI ChainID
    found = stored_image(tmp_path, "app:1")
    assert found is not None and found[0] == image_id
    assert found[2] == [tmp_path / "snapshots" / diffs[0][7:], tmp_path / "snapshots" / second[7:]]
    assert stored_image(tmp_path, "app") == found == stored_image(tmp_path, image_id)
    assert stored_image(tmp_path, "app:2") is None and stored_image(tmp_path, "docker.io/library/app:1") is None


def test_anything_unusual_goes_to_the_store(tmp_path: Path) -> None:
    diffs = [_digest(b"layer0")]
    image_id = _store(tmp_path / "packed", diffs, unpack=False)
    assert stored_image(tmp_path / "packed", "app:1") is None  # not unpacked yet
    image_id = _store(tmp_path / "bad", diffs)
    (tmp_path / "bad" / "blobs" / "sha256" / image_id[7:]).write_bytes(b"{}")  # does not hash to the id
    assert stored_image(tmp_path / "bad", "app:1") is None
    (tmp_path / "outside").mkdir()  # what crafted/snapshots/../../outside names
    _store(tmp_path / "crafted", ["sha256:../../outside"], unpack=False)
    assert stored_image(tmp_path / "crafted", "app:1") is None  # a diff_id must be a digest, never a path
    assert stored_image(tmp_path / "nostore", "app:1") is None


def test_volumes_merge_image_volumes_anonymous_and_binds(tmp_path: Path) -> None:
    config = {"Volumes": {"/data": {}, "/logs/": {}, "/": {}}}
    binds, volumes = volume_mounts(config, RunOptions(volumes=(f"{tmp_path}:/logs:ro", "/cache", "//data")))
    assert [(m.target, m.source, m.type, m.readonly) for m in binds] == [("/logs", str(tmp_path), "bind", True)]
    assert volumes == ("/data", "/cache")
