"""The layer explorer's model: every path of an image with the history of what each layer did to it.

Layers are read one at a time, front to back (`explore(sources)`, or `Explorer.add_layer` as
they arrive), so a viewer can show layer 0 while the rest stream in. Each path is a `PathNode`
holding one version per layer that touched it: `(layer, mark, state)` with
mark A (added), M (modified), D (removed) or "" (re-written unchanged), and `state`
`(kind, size, meta, linkname, digest)` or None once removed. Marks follow `pybuild diff`
(and dive): a path is modified when its kind, content (sha256), link target, mode or owner
differ from the layer below. Directories also keep their summed file size per layer.

    tree as of layer i   every node whose `state(i)` is not None
    layer i's changes    `changes(i)`: path -> A|M|D, `rows(i, CHANGES)` for a view
    cumulative changes   relative to the base layer (0), as dive's aggregated view
    wasted               a file version that a later layer re-writes or removes (its bytes stay stored)
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from builder.analyze.layers import LayerSource
from builder.analyze.tree import DIR, FILE, OPAQUE, WHITEOUT, CountingReader, TarEntry, read_entries

ADDED, MODIFIED, REMOVED, SAME = "A", "M", "D", ""
# view filters
ALL, CHANGES, CUMULATIVE = "all", "layer", "cumulative"

State = tuple[str, int, str, str, str]  # kind, size, meta ("mode uid:gid", "" for an implied dir), link, digest
Version = tuple[int, str, "State | None"]  # layer, mark, state after that layer


class PathNode:
    """One path of the image over all its layers."""

    __slots__ = ("name", "parent", "children", "hist", "sizes", "_cur", "_layer")

    def __init__(self, name: str, parent: PathNode | None) -> None:
        self.name, self.parent = name, parent
        self.children: dict[str, PathNode] = {}
        self.hist: list[Version] = []
        self.sizes: list[tuple[int, int]] = []  # directories: (layer, summed file bytes below) when it changed
        self._cur: State | None = None  # while a layer is applied
        self._layer = -1  # the layer being applied when _cur was set

    @property
    def path(self) -> str:
        """The absolute path ("/" for the root)."""
        names = []
        node: PathNode | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(names))

    def version(self, layer: int) -> Version | None:
        """The last version at or before `layer`."""
        for v in reversed(self.hist):
            if v[0] <= layer:
                return v
        return None

    def state(self, layer: int) -> State | None:
        """What the path is as of `layer` (None: absent)."""
        if self.parent is None:
            return (DIR, 0, "", "", "")
        v = self.version(layer)
        return v[2] if v else None

    def mark(self, layer: int) -> str | None:
        """What `layer` did to this path: A, M, D, "" (re-written unchanged) or None (not touched)."""
        for v in reversed(self.hist):
            if v[0] == layer:
                return v[1]
            if v[0] < layer:
                break
        return None

    def size(self, layer: int) -> int:
        """A file's size; a directory's summed file bytes below it, as of `layer`."""
        if self.children or self.sizes:
            for at, total in reversed(self.sizes):
                if at <= layer:
                    return total
            return 0
        st = self.state(layer)
        return st[1] if st else 0

    def is_dir(self, layer: int) -> bool:
        st = self.state(layer)
        if st is None:  # removed at this layer: what it was
            v = self.version(layer - 1)
            st = v[2] if v else None
        return st is not None and st[0] == DIR

    def wasted(self, layer: int) -> bool:
        """True when the file version visible at `layer` is re-written or removed by a later layer."""
        v = self.version(layer)
        if v is None or v[2] is None or v[2][0] != FILE or not v[2][1]:
            return False
        return self.hist[-1] is not v

    def touched(self) -> list[tuple[int, str]]:
        """(layer, mark) of every layer that wrote or removed this path."""
        return [(v[0], v[1]) for v in self.hist]


@dataclass(frozen=True, slots=True)
class LayerInfo:
    index: int
    digest: str
    diff_id: str
    created_by: str
    compressed_size: int | None
    tar_size: int
    content_size: int  # bytes of regular files in the layer
    added: int  # non-directory paths, by mark
    modified: int
    removed: int


def _same(a: State, b: State) -> bool:
    """Equal kind, size, link and content; mode and owner equal unless one is unknown (implied dir)."""
    return a[0] == b[0] and a[1] == b[1] and a[3] == b[3] and a[4] == b[4] and (a[2] == b[2] or not a[2] or not b[2])


class Explorer:
    """Every path of an image with its per-layer versions; layers are added in order."""

    def __init__(self) -> None:
        self.root = PathNode("", None)
        self.layers: list[LayerInfo] = []
        self.changed: list[list[tuple[PathNode, str]]] = []  # per layer: (node, mark), marks A/M/D only
        self.wasted_bytes: list[int] = []  # per layer: bytes of its files re-written or removed later
        self.lock = threading.RLock()  # held while a layer is applied; viewers take it to read
        self._paths: list[tuple[str, PathNode]] | None = None
        self._meta: dict[str, str] = {}
        self._marked: dict[tuple[int, bool], set[PathNode]] = {}
        self._cum: tuple[int, set[PathNode]] = (-1, set())

    # -- building ------------------------------------------------------------------------------

    def add_layer(self, entries: Sequence[TarEntry], source: LayerSource | None = None, tar_size: int = 0) -> LayerInfo:
        """Apply one layer's entries (OCI semantics: whiteouts and opaque markers hide the layers
        below, then members are written in order)."""
        with self.lock:
            return self._add(entries, source or LayerSource(open=lambda: None), tar_size)  # type: ignore[arg-type,return-value]

    def _add(self, entries: Sequence[TarEntry], source: LayerSource, tar_size: int) -> LayerInfo:
        index = len(self.layers)
        touched: list[tuple[PathNode, State | None]] = []

        def now(node: PathNode) -> State | None:
            if node._layer == index:
                return node._cur
            return node.hist[-1][2] if node.hist else None

        def touch(node: PathNode) -> None:
            if node._layer != index:
                prev = node.hist[-1][2] if node.hist else None
                node._layer, node._cur = index, prev
                touched.append((node, prev))

        def hide(node: PathNode) -> None:  # the node and its subtree
            stack = [node]
            while stack:
                n = stack.pop()
                if now(n) is not None:
                    touch(n)
                    n._cur = None
                    stack.extend(n.children.values())

        def lookup(path: str) -> PathNode | None:
            node = self.root
            for name in path.split("/") if path else ():
                nxt = node.children.get(name)
                if nxt is None or now(nxt) is None:
                    return None
                node = nxt
            return node

        for e in entries:  # whiteouts and opaque dirs hide the layers below, not this one
            if e.kind == OPAQUE:
                node = lookup(e.path)
                if node is not None:
                    for child in list(node.children.values()):
                        hide(child)
            elif e.kind == WHITEOUT:
                node = lookup(e.path)
                if node is not None and node is not self.root:
                    hide(node)
        implied: State = (DIR, 0, "", "", "")
        content = 0
        for e in entries:
            if e.kind in (OPAQUE, WHITEOUT):  # its directory must exist, as when a tar is extracted (Docker, dive)
                node = self.root
                for name in (e.path if e.kind == OPAQUE else e.path.rpartition("/")[0]).split("/"):
                    if not name:
                        break
                    nxt = node.children.get(name)
                    if nxt is None:
                        nxt = node.children[name] = PathNode(name, node)
                    st = now(nxt)
                    if st is not None and st[0] != DIR:
                        break  # a file in the way: nothing below it to hide
                    if st is None:
                        touch(nxt)
                        nxt._cur = implied
                    node = nxt
                continue
            node = self.root
            names = e.path.split("/")
            for name in names[:-1]:
                nxt = node.children.get(name)
                if nxt is None:
                    nxt = node.children[name] = PathNode(name, node)
                st = now(nxt)
                if st is None or st[0] != DIR:
                    hide(nxt)
                    touch(nxt)
                    nxt._cur = implied
                node = nxt
            name = names[-1]
            nxt = node.children.get(name)
            if nxt is None:
                nxt = node.children[name] = PathNode(name, node)
            st = now(nxt)
            if st is not None and (e.kind != DIR or st[0] != DIR):
                hide(nxt)  # a non-directory replaces what was there, subtree included
            touch(nxt)
            meta = self._meta.setdefault(e.meta, e.meta)
            nxt._cur = (e.kind, e.size, meta, e.linkname, e.digest)
            if e.kind == FILE:
                content += e.size
        return self._commit(index, touched, source, tar_size, content)

    def _commit(self, index: int, touched: list[tuple[PathNode, State | None]], source: LayerSource,
                tar_size: int, content: int) -> LayerInfo:
        changed: list[tuple[PathNode, str]] = []
        deltas: dict[PathNode, int] = {}
        counts = {ADDED: 0, MODIFIED: 0, REMOVED: 0}
        self.wasted_bytes.append(0)
        for node, prev in touched:
            cur = node._cur
            node._cur, node._layer = None, -1
            if prev is None and cur is None:
                continue
            mark = ADDED if prev is None else REMOVED if cur is None else SAME if _same(prev, cur) else MODIFIED
            if prev is not None and prev[0] == FILE:
                self.wasted_bytes[node.hist[-1][0]] += prev[1]
            node.hist.append((index, mark, cur))
            if mark:
                changed.append((node, mark))
                if (cur or prev)[0] != DIR:  # type: ignore[index]
                    counts[mark] += 1
            delta = (cur[1] if cur and cur[0] == FILE else 0) - (prev[1] if prev and prev[0] == FILE else 0)
            if delta:
                up = node.parent
                while up is not None:
                    deltas[up] = deltas.get(up, 0) + delta
                    up = up.parent
        for d, delta in deltas.items():
            if delta:
                last = d.sizes[-1][1] if d.sizes else 0
                d.sizes.append((index, last + delta))
        info = LayerInfo(index, source.digest, source.diff_id, source.created_by, source.compressed_size, tar_size,
                         content, counts[ADDED], counts[MODIFIED], counts[REMOVED])
        self.changed.append(changed)
        self.layers.append(info)
        self._paths = None
        return info

    # -- reading -------------------------------------------------------------------------------

    def find(self, path: str) -> PathNode | None:
        """The node of an absolute or relative path, whatever its state."""
        node = self.root
        for name in path.strip("/").split("/") if path.strip("/") else ():
            nxt = node.children.get(name)
            if nxt is None:
                return None
            node = nxt
        return node

    def changes(self, layer: int, *, dirs: bool = True) -> dict[str, str]:
        """Path -> A|M|D of what `layer` changed (directories too, unless `dirs` is False)."""
        out = {}
        for node, mark in self.changed[layer]:
            if dirs or not node.is_dir(layer):
                out[node.path] = mark
        return out

    def cumulative_mark(self, node: PathNode, layer: int) -> str | None:
        """The change from the base layer (0) to `layer`: A, M, D, or None when there is none."""
        if layer == 0:
            return node.mark(0) or None
        a, b = node.state(0), node.state(layer)
        if a is None and b is None:
            return None
        if a is None:
            return ADDED
        if b is None:
            return REMOVED
        return None if _same(a, b) else MODIFIED

    def view_mark(self, node: PathNode, layer: int, mode: str) -> str | None:
        return self.cumulative_mark(node, layer) if mode == CUMULATIVE else node.mark(layer)

    def shown(self, node: PathNode, layer: int, mode: str = ALL) -> list[PathNode]:
        """The children of `node` in the tree as of `layer` (those removed by the viewed layer or,
        in CUMULATIVE, since the base too), by name."""
        out = []
        for name in sorted(node.children):
            child = node.children[name]
            if child.state(layer) is not None or self.view_mark(child, layer, mode) == REMOVED:
                out.append(child)
        return out

    def marked(self, layer: int, mode: str) -> set[PathNode]:
        """Nodes with a mark in the view, and every directory above them (the last few kept: a
        layer's marks never change once it is read)."""
        key = (layer, mode == CUMULATIVE and layer > 0)
        keep = self._marked.get(key)
        if keep is None:
            found = self._cumulative(layer) if key[1] else {n for n, _ in self.changed[layer]}
            keep = set()
            for n in found:
                while n is not None and n not in keep:
                    keep.add(n)
                    n = n.parent  # type: ignore[assignment]
            if len(self._marked) >= 4:
                self._marked.pop(next(iter(self._marked)))
            self._marked[key] = keep
        return keep

    def _cumulative(self, layer: int) -> set[PathNode]:
        """Nodes with a cumulative mark at `layer`, layer by layer: a node no layer after the base
        touched since keeps the mark it had (the one before is kept for the next call)."""
        at, found = self._cum
        if at > layer or at < 0:
            at, found = 0, set()
        found = set(found)
        for i in range(at + 1, layer + 1):
            for n, _ in self.changed[i]:
                if self.cumulative_mark(n, i):
                    found.add(n)
                else:
                    found.discard(n)
        self._cum = (layer, found)
        return found

    def paths(self) -> list[tuple[str, PathNode]]:
        """Every node but the root with its path, depth first (cached until the next layer)."""
        if self._paths is None:
            out: list[tuple[str, PathNode]] = []
            stack = [("", self.root)]
            while stack:
                prefix, node = stack.pop()
                for name, child in node.children.items():
                    path = f"{prefix}/{name}"
                    out.append((path, child))
                    if child.children:
                        stack.append((path, child))
            self._paths = out
        return self._paths

    def search(self, query: str, layer: int, mode: str = ALL) -> set[PathNode]:
        """Nodes in the view whose path contains `query` (case-insensitive), with their directories."""
        q = query.lower()
        keep: set[PathNode] = set()
        for path, node in self.paths():
            if q in path.lower() and (node.state(layer) is not None or self.view_mark(node, layer, mode) == REMOVED):
                n: PathNode | None = node
                while n is not None and n not in keep:
                    keep.add(n)
                    n = n.parent
        return keep

    def rows(self, layer: int, mode: str = ALL, *, only_changes: bool = False, expanded: set[PathNode] | None = None,
             query: str = "") -> list[tuple[PathNode, int]]:
        """The tree as of `layer`, flattened for a view: (node, depth) in display order. Directories
        are open when in `expanded` (all when None); `only_changes` keeps what has a mark in `mode`
        (this layer's changes, or the cumulative ones) and the directories above; a `query` keeps
        matching paths and opens every directory above them."""
        keep = self.marked(layer, CUMULATIVE if mode == CUMULATIVE else CHANGES) if only_changes else None
        found = self.search(query, layer, mode) if query else None
        out: list[tuple[PathNode, int]] = []
        stack: list[tuple[PathNode, int]] = [(c, 0) for c in reversed(self.shown(self.root, layer, mode))]
        while stack:
            node, depth = stack.pop()
            if (keep is not None and node not in keep) or (found is not None and node not in found):
                continue
            out.append((node, depth))
            if node.children and (found is not None or expanded is None or node in expanded):
                stack.extend((c, depth + 1) for c in reversed(self.shown(node, layer, mode)))
        return out

    def details(self, node: PathNode, layer: int) -> str:
        """One line about `node` as of `layer`: kind, mode, owner, size, link target, layers that touched it."""
        st = node.state(layer)
        gone = st is None
        if gone:
            v = node.version(layer - 1)
            st = v[2] if v else None
        parts = [node.path]
        if st is not None:
            kind, size, meta, link, _ = st
            mode, _, owner = meta.partition(" ")
            parts.append(kind + (" (removed here)" if gone else ""))
            if mode:
                parts.append(f"mode {mode}")
            if owner:
                parts.append(f"owner {owner}")
            parts.append(f"{node.size(layer if not gone else layer - 1)} bytes")
            if link:
                parts.append(f"-> {link}")
        touched = " ".join(f"{i}{m or '='}" for i, m in node.touched())
        parts.append(f"layers {touched}")
        if node.wasted(layer):
            parts.append("wasted: a later layer re-writes or removes it")
        return "  ".join(parts)


def _read(source: LayerSource, index: int, label: str) -> tuple[list[TarEntry], int]:
    where = (f"{label}: " if label else "") + f"layer {index}" + (f" ({source.digest})" if source.digest else "")
    raw = source.open()
    try:
        counted = CountingReader(raw)
        return list(read_entries(counted, where=where, digests=True)), counted.count  # type: ignore[arg-type]
    finally:
        raw.close()


def stream_layers(sources: Sequence[LayerSource], *, label: str = "",
                  readers: int = 2) -> Iterator[tuple[LayerSource, list[TarEntry], int]]:
    """Each layer's entries (with content digests) and tar size, in order. Layer 0 is read alone
    (a viewer shows it first), then `readers` at once (1 when the sources share one file handle,
    as members of a tar archive do)."""
    with ThreadPoolExecutor(max_workers=max(readers, 1)) as pool:
        pending = [pool.submit(_read, sources[0], 0, label)] if sources else []
        nxt = 1
        for index, source in enumerate(sources):
            entries, tar_size = pending.pop(0).result()
            while nxt < len(sources) and len(pending) < max(readers, 1):
                pending.append(pool.submit(_read, sources[nxt], nxt, label))
                nxt += 1
            yield source, entries, tar_size


def explore(sources: Iterable[LayerSource], *, label: str = "", readers: int = 2,
            on_layer: Callable[[Explorer, LayerInfo], None] | None = None, model: Explorer | None = None) -> Explorer:
    """Read the layers in order into an `Explorer` (or `model`), calling `on_layer` after each."""
    model = model or Explorer()
    for source, entries, tar_size in stream_layers(list(sources), label=label, readers=readers):
        info = model.add_layer(entries, source, tar_size)
        if on_layer is not None:
            on_layer(model, info)
    return model


def to_json(model: Explorer) -> dict:
    """The model for a page: layers, and nodes as [parent, name, versions, dir sizes], parents first.
    A version is [layer, mark, state] with state [kind, size, meta, link, digest (16 hex)] or null."""
    ids: dict[int, int] = {}
    nodes: list[list] = []
    for _path, node in model.paths():
        ids[id(node)] = len(nodes)
        parent = -1 if node.parent is model.root or node.parent is None else ids[id(node.parent)]
        hist = [[layer, mark, None if st is None else [st[0], st[1], st[2], st[3], st[4][7:23]]]
                for layer, mark, st in node.hist]
        nodes.append([parent, node.name, hist, [list(s) for s in node.sizes]])
    layers = [{"index": i.index, "created_by": i.created_by, "digest": i.digest or i.diff_id,
               "content_size": i.content_size, "tar_size": i.tar_size, "added": i.added, "modified": i.modified,
               "removed": i.removed, "wasted": model.wasted_bytes[i.index]} for i in model.layers]
    return {"layers": layers, "root_sizes": [list(s) for s in model.root.sizes], "nodes": nodes}


class Loading:
    """Layers read into a model on a background thread, started before any viewer is ready (the
    viewer's own imports run meanwhile); a viewer polls `model.layers`, `error` and `done`."""

    def __init__(self, sources: Sequence[LayerSource], *, label: str = "", readers: int = 2) -> None:
        self.model, self.total = Explorer(), len(sources)
        self.error: BaseException | None = None
        self.done = False
        self._sources, self._label, self._readers = list(sources), label, readers
        self.stop = False

    def start(self) -> "Loading":
        threading.Thread(target=self._run, daemon=True, name="explorer-load").start()
        return self

    def _run(self) -> None:
        try:
            for source, entries, tar_size in stream_layers(self._sources, label=self._label, readers=self._readers):
                if self.stop:
                    return
                self.model.add_layer(entries, source, tar_size)
                del entries
                gc.freeze()  # the model lives as long as the viewer: the collector need not walk it again
        except BaseException as exc:  # noqa: BLE001 - the viewer reports it once the terminal is restored
            self.error = exc
        finally:
            self.done = True
