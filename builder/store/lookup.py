"""Reading the store's index and snapshots cheaply: what `pybuild run` needs on its fast path,
and what `Store` itself reads them with. Imports no OCI model (no dataclasses, no hashlib)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from builder.errors import StoreError
from builder.util.sha import chain_ids, sha256

__all__ = ["read_index", "find_unpacked", "snapshot_dir"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def read_index(root: Path) -> dict:
    """`images.json` ({"images": {...}, "tags": {...}}); empty when there is none yet."""
    try:
        d = json.loads((root / "images.json").read_text())
    except FileNotFoundError:
        return {"images": {}, "tags": {}}
    except ValueError:
        raise StoreError(f"{root / 'images.json'} is corrupt") from None
    d.setdefault("images", {})
    d.setdefault("tags", {})
    return d


def snapshot_dir(root: Path, chain_id: str) -> Path:
    """Where the snapshot of the layer chain `chain_id` lives (whether or not it exists)."""
    return root / "snapshots" / chain_id.split(":", 1)[-1]


_MACHINE = {"x86_64": ("amd64", ""), "aarch64": ("arm64", ""), "armv7l": ("arm", "v7")}  # the common hosts


def _host_image_of(root: Path, index_digest: str) -> str | None:
    """The config digest of a stored multi-platform index's image for this machine, when an entry
    names its platform plainly (linux/amd64, linux/arm64, linux/arm/v7); else None (`Store.resolve`
    matches platforms fully)."""
    import os

    want = _MACHINE.get(os.uname().machine)
    if want is None or not _DIGEST.fullmatch(index_digest):
        return None
    raw = (root / "blobs" / "sha256" / index_digest[7:]).read_bytes()
    if sha256(raw).hexdigest() != index_digest[7:]:
        return None
    for entry in json.loads(raw)["manifests"]:
        p = entry.get("platform") or {}
        if (p.get("os"), p.get("architecture"), p.get("variant") or "") == ("linux", *want):
            digest = entry["digest"]
            if not _DIGEST.fullmatch(digest):
                return None
            manifest = (root / "blobs" / "sha256" / digest[7:]).read_bytes()
            if sha256(manifest).hexdigest() != digest[7:]:
                return None
            return str(json.loads(manifest)["config"]["digest"])
    return None


def find_unpacked(root: Path, ref: str) -> tuple[str, bytes, list[Path]] | None:
    """(image id, raw config, snapshot dirs lowest first) of an image named by a plain tag
    (`name[:tag]`, as stored) or its full id, whose layers are all unpacked; None when anything
    is off this fast path (a name that needs normalising, a snapshot still packed, a config that
    does not hash to the id): `Store.resolve` and `Store.rootfs_dirs` handle those."""
    try:
        index = read_index(root)
        name = ref if ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"
        image_id = index["tags"].get(name) or (ref if ref in index["images"] else None)
        if isinstance(image_id, str) and image_id in index.get("indexes", {}):
            image_id = _host_image_of(root, image_id)
        if not isinstance(image_id, str) or not _DIGEST.fullmatch(image_id):
            return None
        raw = (root / "blobs" / "sha256" / image_id[7:]).read_bytes()
        if sha256(raw).hexdigest() != image_id[7:]:
            return None
        diff_ids = json.loads(raw)["rootfs"]["diff_ids"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StoreError):
        return None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in diff_ids):
        return None  # a diff_id must be a digest, never a path of our making
    dirs = [snapshot_dir(root, chain) for chain in chain_ids(diff_ids)]
    return (image_id, raw, dirs) if all(d.is_dir() for d in dirs) else None
