"""One streaming pass over an image's layers: every per-layer and per-image figure of `analyze`.

Each layer tar is read once, front to back (never extracted, never held in memory); only the
file tree of paths and sizes is kept. Two trees are stacked side by side: the real one with
OCI semantics (whiteouts and opaque directories hide what is below) and dive's (see
`analyze_efficiency`), so both dive's figures and the corrected ones come out of the same pass.

Corrected figures (documented in README.md):
    content size of a layer  = sum of its regular files' sizes (dive's "layer size")
    wasted bytes of a layer  = bytes of its files that a later layer (or a later member of the
                               same tar) overwrites or deletes, so they are stored but never seen
                               (a file's bytes stay seen while a hard link to them does)
    image wasted bytes       = sum over layers = total content size - final visible size
    user wasted bytes        = the same over layers after the base layers: what editing the
                               Dockerfile (cleaning up in the same RUN, not copying twice) saves
"""

from __future__ import annotations

import heapq
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Callable, Sequence

from builder.analyze.efficiency import DiveTally, Inefficiency
from builder.analyze.tree import (DIR, FILE, HARDLINK, OPAQUE, WHITEOUT, Content, CountingReader, Node, TarEntry,
                                  Tree, normalize, read_entries)
from builder.errors import ImageFormatError

TOP_FILES = 20  # largest files kept per layer and per image
READERS = 2  # layers decompressed and scanned at once


@dataclass(frozen=True, slots=True)
class FileRef:
    """A path (with a leading slash) and a size in bytes; `layer` is where that copy lives."""

    path: str
    size: int
    layer: int = -1


@dataclass(frozen=True, slots=True)
class LayerSource:
    """What the engine needs of one layer: its uncompressed tar, and what to call it."""

    open: Callable[[], IO[bytes]]  # a fresh stream of the *uncompressed* tar
    digest: str = ""
    diff_id: str = ""
    media_type: str = ""
    compressed_size: int | None = None
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class LayerReport:
    """Everything `analyze` says about one layer."""

    index: int
    digest: str
    diff_id: str
    media_type: str
    created_by: str
    compressed_size: int | None
    uncompressed_size: int  # bytes of the tar stream
    content_size: int  # sum of regular file sizes (dive's layer size)
    added: tuple[FileRef, ...]
    modified: tuple[FileRef, ...]
    removed: tuple[FileRef, ...]  # whiteout targets, with the bytes they hid
    removed_files: int  # non-directory paths hidden by this layer's whiteouts
    wasted_bytes: int  # bytes of this layer's files that later layers overwrite or delete
    largest: tuple[FileRef, ...]


@dataclass(frozen=True, slots=True)
class ImageReport:
    """Everything `analyze` says about one image; `dive_*` follow dive's definitions exactly."""

    reference: str
    layers: tuple[LayerReport, ...]
    base_layers: int
    size_bytes: int  # sum of content sizes
    user_size_bytes: int  # the same without the base layers
    final_size_bytes: int  # regular files visible in the final filesystem
    dive_efficiency: float
    dive_wasted_bytes: int
    dive_user_wasted_percent: float  # inf when dive divides waste by no user bytes (it prints +Inf)
    wasted_bytes: int  # corrected: stored but never visible
    user_wasted_bytes: int  # corrected, in layers after the base: what a user can save
    user_wasted_percent: float
    largest_files: tuple[FileRef, ...]
    wasted_files: tuple[FileRef, ...]  # largest hidden copies (layer = the layer that stored them)
    inefficiencies: tuple[Inefficiency, ...]
    config: dict = field(default_factory=dict, compare=False)


class _Pass:
    """The state of one streaming pass; `layer()` consumes one layer's entries."""

    def __init__(self, n_layers: int) -> None:
        self.tree = Tree()
        self.dive = DiveTally()
        self.wasted = [0] * n_layers
        self.wasted_top: list[tuple[int, str, int]] = []  # min-heap (size, path, layer)

    def _waste(self, path: str, node: Node) -> int:
        """Account a hidden node (and its subtree); returns the non-directory paths it held. A
        file's bytes are wasted when its last visible path (itself or a hard link) goes."""
        files = 0
        for p, n in [(path, node), *((f"{path}/{q}", m) for q, m in node.walk(""))]:
            if n.kind != DIR:
                files += 1
                c = n.content
                if c is not None:
                    c.links -= 1
                    if c.links == 0 and c.size:
                        self.wasted[c.layer] += c.size
                        self._keep(self.wasted_top, (c.size, "/" + p, c.layer))
        return files

    @staticmethod
    def _keep(heap: list, item: tuple) -> None:
        if len(heap) < TOP_FILES:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)

    def layer(self, index: int, entries: list[TarEntry]) -> dict:
        self.dive.add_layer(index, entries)
        removed: list[FileRef] = []
        removed_files = 0
        for e in entries:  # whiteouts and opaque dirs hide the layers below, not this one
            if e.kind == OPAQUE:
                node = self.tree.get(e.path) if e.path else self.tree.root
                if node is not None and node.children:
                    hidden = list(node.children.items())
                    node.children = {}
                    self.tree.forget()
                    for name, child in hidden:
                        path = f"{e.path}/{name}" if e.path else name
                        removed_files += self._waste(path, child)
                        removed.append(FileRef("/" + path, child.subtree_size(), child.layer))
            elif e.kind == WHITEOUT:
                node = self.tree.remove(e.path)
                if node is not None:
                    removed_files += self._waste(e.path, node)
                    removed.append(FileRef("/" + e.path, node.subtree_size(), node.layer))
        added: dict[str, FileRef] = {}
        modified: dict[str, FileRef] = {}
        largest: list[tuple[int, str]] = []
        for e in entries:
            if e.kind in (OPAQUE, WHITEOUT):
                continue
            parent = self.tree.parent(e.path, create=True, layer=index)
            assert parent is not None and parent.children is not None
            while self.tree.displaced:  # a file where this path needs a directory: hidden now
                self._waste(*self.tree.displaced.pop())
            name = e.path.rsplit("/", 1)[-1]
            old = parent.children.get(name)
            if e.kind == DIR:
                if old is None or old.kind != DIR:
                    if old is not None:
                        self._waste(e.path, old)
                        self.tree.forget()
                    parent.children[name] = Node(0, DIR, index)
                else:
                    old.layer = index  # re-listed (metadata may change); children stay
                continue
            ref = FileRef("/" + e.path, e.size, index)
            if e.path in added or e.path in modified:  # a later member for the same path in this tar
                (added if e.path in added else modified)[e.path] = ref
            elif old is None:
                added[e.path] = ref
            else:
                modified[e.path] = ref
            if old is not None:
                self._waste(e.path, old)
                if old.children is not None:
                    self.tree.forget()
            node = parent.children[name] = Node(e.size, e.kind, index)
            if e.kind == FILE:
                node.content = Content(e.size, index)
                self._keep(largest, (e.size, ref.path))
            elif e.kind == HARDLINK:  # the same bytes under another path: they stay visible while either does
                try:
                    target = self.tree.get(normalize(e.linkname, where=f"layer {index}"))
                except ImageFormatError:  # a link out of the root links nothing here
                    target = None
                if target is not None and target.content is not None:
                    node.content = target.content
                    target.content.links += 1
        return {
            "added": tuple(added.values()),
            "modified": tuple(modified.values()),
            "removed": tuple(removed),
            "removed_files": removed_files,
            "largest": tuple(FileRef(p, s, index) for s, p in sorted(largest, reverse=True)),
        }


def _ratio(wasted: int, size: int) -> float:
    """dive's wasted / user bytes in Go's float arithmetic: +Inf over 0 bytes (NaN, which passes
    every rule, as 0)."""
    return wasted / size if size else math.inf if wasted else 0.0


def _read_layer(source: LayerSource, index: int, image: str = "") -> tuple[list[TarEntry], int]:
    """All entries of one layer, and the size of its uncompressed tar."""
    where = (f"{image}: " if image else "") + f"layer {index}" + (f" ({source.digest})" if source.digest else "")
    raw = source.open()
    try:
        counted = CountingReader(raw)
        return list(read_entries(counted, where=where)), counted.count  # type: ignore[arg-type]
    finally:
        raw.close()


def analyze_layers(layers: Sequence[LayerSource], *, reference: str = "", base_layers: int = 1,
                   config: dict | None = None, readers: int = READERS) -> ImageReport:
    """Read each layer once, in order, and compute every figure of the report. `readers` layers
    are read at once: 1 when the sources share a file handle (members of one tar archive)."""
    run = _Pass(len(layers))
    partial: list[tuple[LayerSource, dict, int, int]] = []
    # layers are read two at a time (decompression runs outside the GIL), consumed in order
    with ThreadPoolExecutor(max_workers=max(readers, 1)) as pool:
        read = pool.map(_read_layer, layers, range(len(layers)), [reference] * len(layers))
        for index, (source, (entries, tar_bytes)) in enumerate(zip(layers, read)):
            content = sum(e.size for e in entries)
            partial.append((source, run.layer(index, entries), tar_bytes, content))
    reports = tuple(
        LayerReport(index=i, digest=s.digest, diff_id=s.diff_id, media_type=s.media_type, created_by=s.created_by,
                    compressed_size=s.compressed_size, uncompressed_size=tar_bytes, content_size=content,
                    wasted_bytes=run.wasted[i], **parts)
        for i, (s, parts, tar_bytes, content) in enumerate(partial)
    )
    final: list[tuple[int, str]] = []
    final_size = 0
    shown: set[int] = set()  # contents counted once, however many hard links show them
    for path, node in run.tree.walk():
        c = node.content
        if c is not None and id(c) not in shown:
            shown.add(id(c))
            final_size += c.size
            _Pass._keep(final, (c.size, "/" + path, c.layer))  # type: ignore[arg-type]
    size = sum(r.content_size for r in reports)
    base = min(base_layers, len(reports))
    user_size = sum(r.content_size for r in reports[base:])
    dive_wasted = run.dive.wasted_bytes()
    user_wasted = sum(r.wasted_bytes for r in reports[base:])
    return ImageReport(
        reference=reference, layers=reports, base_layers=base, size_bytes=size, user_size_bytes=user_size,
        final_size_bytes=final_size, dive_efficiency=run.dive.efficiency(), dive_wasted_bytes=dive_wasted,
        dive_user_wasted_percent=_ratio(dive_wasted, sum(r.content_size for r in reports[1:])),  # dive: base = 1 layer
        wasted_bytes=sum(run.wasted), user_wasted_bytes=user_wasted,
        user_wasted_percent=user_wasted / user_size if user_size else 0.0,
        largest_files=tuple(FileRef(p, s, layer) for s, p, layer in sorted(final, reverse=True)),  # type: ignore[misc]
        wasted_files=tuple(FileRef(p, s, layer) for s, p, layer in sorted(run.wasted_top, reverse=True)),
        inefficiencies=tuple(run.dive.inefficiencies()),
        config=config or {},
    )
