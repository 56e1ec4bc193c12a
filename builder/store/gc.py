"""Garbage collection: what no tag, image or given root references goes, under the exclusive lock.

The store does not know who else keeps content alive: its caller passes `GCRoots` (the build
cache's entries, see builder/cache/policy.py); container state (`containers/*/*.json`) is always a root.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Callable, Sequence

from builder.errors import ImageFormatError, StoreError
from builder.oci.model import Digest, Index, chain_ids
from builder.store.images import ImageStore

__all__ = ["GCRoots", "PruneReport", "CONTAINER_ROOTS", "prune"]

_DIGEST_TEXT = re.compile(rb"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class GCRoots:
    """Files under the store root whose every `sha256:` digest is kept (images, manifests, blobs,
    layers, snapshots), and a hook told, after a prune, which snapshot chain ids remain."""

    patterns: tuple[str, ...]
    after: Callable[[Callable[[str], bool]], object] | None = None


CONTAINER_ROOTS = GCRoots(("containers/*/*.json",))
"""Container state (the runtime's): an image or snapshot a container uses stays."""


@dataclass
class PruneReport:
    images: list[str] = field(default_factory=list)
    blobs: int = 0
    snapshots: int = 0
    temp: int = 0
    bytes_freed: int = 0


def _root_digests(store: ImageStore, roots: Sequence[GCRoots]) -> set[str]:
    found: set[str] = set()
    for pattern in (p for r in roots for p in r.patterns):
        for path in store.root.glob(pattern):
            with contextlib.suppress(OSError):
                found.update(m.decode() for m in _DIGEST_TEXT.findall(path.read_bytes()))
    return found


def prune(store: ImageStore, roots: Sequence[GCRoots] = (), wait: bool = True, *, keep_images: bool = False,
          dry_run: bool = False) -> PruneReport:
    """Remove images no tag or root references, unreferenced blobs, snapshots and temp files.

    `keep_images`: every image stays (only what no image nor root uses goes); `dry_run`: report
    what would go and remove nothing. Takes the store lock exclusively, so it waits for (and
    never races) writers holding a lease.
    """
    if store.leased:
        raise StoreError("prune cannot run while this process holds a store lease")
    report = PruneReport()
    fd = os.open(store.root / "lock", os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise StoreError("the store is busy (a build or pull is writing)", hint="try again later") from None
        _prune_locked(store, [CONTAINER_ROOTS, *roots], report, keep_images, dry_run)
    finally:
        os.close(fd)
    return report


def _prune_locked(store: ImageStore, roots: Sequence[GCRoots], report: PruneReport, all_images: bool = False,
                  dry_run: bool = False) -> None:
    root = store.root
    keep = _root_digests(store, roots)
    with store._index_lock():
        index = store._read_index()
        tagged = set(index["tags"].values())
        indexes = {d: r for d, r in index.get("indexes", {}).items() if all_images or d in tagged or d in keep}
        index_manifests: set[str] = set(indexes)  # a kept index keeps its blob and its images
        for digest in indexes:
            try:
                index_manifests.update(d.digest for d in Index.from_json(store.read_blob(Digest(digest))).manifests)
            except (StoreError, ImageFormatError):
                continue
        keep_images = {i for i, rec in index["images"].items()
                       if all_images or i in tagged or i in keep or rec["manifest"] in keep
                       or rec["manifest"] in index_manifests}
        report.images = sorted(set(index["images"]) - keep_images) + sorted(set(index.get("indexes", {})) - set(indexes))
        if report.images and not dry_run:
            index["images"] = {i: r for i, r in index["images"].items() if i in keep_images}
            if "indexes" in index:
                index["indexes"] = indexes
            store._write_json_atomic(root / "images.json", index)
    keep_blobs, keep_diffs, keep_chains = set(keep) | index_manifests, set(keep), set(keep)
    for image_id in keep_images:
        try:
            img = store.image_by_id(image_id)
        except (StoreError, ImageFormatError):
            continue
        keep_blobs.update({img.id, img.digest, *(l.digest for l in img.layers())})
        diffs = [l.diff_id for l in img.layers()]
        keep_diffs.update(diffs)
        keep_chains.update(chain_ids(diffs))
    for path in (root / "layers").glob("*.json"):
        diff = "sha256:" + path.stem
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            if not dry_run:
                path.unlink(missing_ok=True)
            continue
        if diff in keep_diffs or rec.get("digest") in keep_blobs:
            keep_blobs.add(rec.get("digest", ""))
        elif not dry_run:
            path.unlink(missing_ok=True)
    for path in (root / "blobs" / "sha256").iterdir():
        if "sha256:" + path.name not in keep_blobs:
            report.bytes_freed += path.stat().st_size
            if not dry_run:
                path.unlink()
            report.blobs += 1
    for path in (root / "snapshots").iterdir():
        if "sha256:" + path.name not in keep_chains:
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
            report.snapshots += 1
    if dry_run:
        report.temp = sum(1 for _ in (root / "tmp").iterdir())
        return
    for r in roots:
        if r.after is not None:
            r.after(lambda chain: chain in keep_chains)
    for path in (root / "tmp").iterdir():  # no lease is held, so nothing here is in use
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        report.temp += 1
