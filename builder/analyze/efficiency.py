"""Efficiency and wasted bytes exactly as dive (wagoodman/dive) defines them, layer by layer.

dive builds one file tree per layer and visits only its *leaves* (paths with no children in that
layer). For each leaf path it records a size: the tar header size, or for a whiteout of a path
that was a directory in the layers below, the sum of that directory's subtree there (a whiteout
of a file counts 0). Over all layers, per path:

    cumulative(path) = sum of its recorded sizes      minimum(path) = the smallest one
    efficiency       = sum(minimum) / sum(cumulative)   (1.0 when the sum is 0)
    wasted bytes     = sum(cumulative) over paths recorded more than once
    user wasted %    = wasted bytes / (sum of layer sizes except the first)

dive's wasted bytes therefore count every copy, the one that survives included (a known
inconsistency in dive's tracker); `analyze.py` reports the corrected figure next to it.
Also as in dive, `.wh..wh..opq` markers are ignored and a layer's implicit parent
directories (no tar member of their own) are "not directories" of size 0 in the stacked tree.
And as in dive, a whiteout of a path missing below (for the first layer: missing in that layer)
ends that layer's visit: leaves after it (in name order, depth first) are not recorded, and the
path, if new, enters the sums with no copy and a minimum of -1 (dive's "not yet seen" value).
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.analyze.tree import DIR, OPAQUE, WH_PREFIX, WHITEOUT, Node, TarEntry, Tree

IMPLICIT = "implicit"  # a parent dir with no tar member of its own: dive gives it an empty FileInfo


@dataclass(frozen=True, slots=True)
class Inefficiency:
    """A path dive saw more than once: its copies' total and smallest size, and the layers."""

    path: str
    cumulative_size: int
    minimum_size: int
    layers: tuple[int, ...]


class DiveTally:
    """Feed it each layer's entries in order; `efficiency()` and `wasted_bytes()` give dive's figures."""

    def __init__(self) -> None:
        self._tree = Tree()  # the stacked tree as dive sees it (no opaque dirs)
        self._paths: dict[str, list] = {}  # path -> [cumulative, minimum, [layers]]

    def add_layer(self, index: int, entries: list[TarEntry]) -> None:
        """Account one layer: visit its leaves, then stack it onto the tree."""
        nodes: dict[str, TarEntry | None] = {}  # node path in this layer's tree -> entry
        inner: set[str] = set()  # nodes with a child
        for e in entries:
            if e.kind == OPAQUE:
                key = e.path  # dive makes the directory (if absent) but never the marker
                if key:
                    nodes.setdefault(key, None)
                    _ancestors(key, inner)
                continue
            key = _node_key(e)
            nodes[key] = e
            _ancestors(key, inner)
        for key in inner:
            nodes.setdefault(key, None)
        # dive visits the leaves depth first, children in name order (which only matters, and so
        # is only sorted, when a whiteout can end the visit or must remove between additions)
        whiteouts = any(e is not None and e.kind == WHITEOUT for e in nodes.values())
        leaves = [k for k in nodes if k not in inner]
        for key in sorted(leaves, key=lambda k: k.split("/")) if whiteouts else leaves:
            node = nodes[key]
            if node is not None and node.kind == WHITEOUT:
                below = self._below(index, node.path, nodes)
                if below is None:  # dive: the lookup fails after the path was entered, and the visit stops
                    self._paths.setdefault(node.path, [0, -1, []])
                    break
                self._record(node.path, below, index)
            else:
                self._record(key, node.size if node is not None else 0, index)
        self._stack(index, sorted(nodes, key=_post_order) if whiteouts else list(nodes), nodes)

    def _below(self, index: int, path: str, nodes: dict[str, TarEntry | None]) -> int | None:
        """What dive counts for a whiteout of `path`: the subtree size of a directory, 0 for
        anything else, None when the path is missing. dive looks in the layers below stacked,
        or for the first layer in that layer's own tree."""
        if index > 0:
            node = self._tree.get(path)
            return None if node is None else node.subtree_size() if node.kind == DIR else 0
        if path not in nodes:
            return None
        own = nodes[path]
        if own is None or own.kind != DIR:
            return 0
        return sum(e.size for k, e in nodes.items() if e is not None and k.startswith(path + "/"))

    def _record(self, path: str, size: int, layer: int) -> None:
        data = self._paths.get(path)
        if data is None:
            self._paths[path] = [size, size, [layer]]
        else:
            data[0] += size
            data[1] = size if data[1] < 0 else min(data[1], size)
            data[2].append(layer)

    def _stack(self, index: int, order: list[str], nodes: dict[str, TarEntry | None]) -> None:
        """Graft a layer's nodes in `order`: dive's is children before their directory, names in
        order, a whiteout removing when its turn comes (`-d` then `.wh.-d` leaves no `-d`)."""
        for key in order:
            e = nodes[key]
            if e is not None and e.kind == WHITEOUT:
                self._tree.remove(e.path)
                continue
            parent = self._tree.parent(key, create=True, layer=index)
            assert parent is not None and parent.children is not None
            self._tree.displaced.clear()  # only the real tree accounts for what a new directory hides
            name = key.rsplit("/", 1)[-1]
            node = parent.children.get(name)
            kind = e.kind if e is not None else IMPLICIT
            size = e.size if e is not None else 0
            if node is None:
                node = parent.children[name] = Node(size, kind, index)
                node.children = {}  # in dive any node can hold children: a path below a file nests in it
            node.size, node.kind, node.layer = size, kind, index  # dive replaces the payload, keeps children

    def efficiency(self) -> float:
        total = sum(d[0] for d in self._paths.values())
        return 1.0 if total == 0 else sum(d[1] for d in self._paths.values()) / total

    def wasted_bytes(self) -> int:
        return sum(d[0] for d in self._paths.values() if len(d[2]) > 1)

    def inefficiencies(self) -> list[Inefficiency]:
        """Paths recorded more than once, largest cumulative size first."""
        out = [Inefficiency("/" + p, d[0], d[1], tuple(d[2])) for p, d in self._paths.items() if len(d[2]) > 1]
        out.sort(key=lambda i: (-i.cumulative_size, i.path))
        return out


def _node_key(e: TarEntry) -> str:
    if e.kind != WHITEOUT:
        return e.path
    head, _, base = e.path.rpartition("/")
    return f"{head}/{WH_PREFIX}{base}" if head else WH_PREFIX + base


def _post_order(key: str) -> list[tuple[int, str]]:
    """Sort key of a depth-first, children-first walk with names in order."""
    return [(0, name) for name in key.split("/")] + [(1, "")]


def _ancestors(path: str, into: set[str]) -> None:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        if path in into:
            return
        into.add(path)
