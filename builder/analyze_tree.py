"""Layer tars as analysis sees them: members read in one streaming pass, and a stacked file tree.

A layer tar is read once, front to back, without extracting anything: each member becomes a
`TarEntry` (normalised path, kind, size). OCI whiteouts are named constants, as in umoci:
`.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` hides everything below in its
directory. `Tree` is a filesystem of sizes only (no content), cheap enough for 50,000 paths.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from builder.errors import ImageFormatError

WH_PREFIX = ".wh."
WH_OPAQUE = WH_PREFIX + WH_PREFIX + ".opq"

# entry kinds
FILE, DIR, SYMLINK, HARDLINK, OTHER, WHITEOUT, OPAQUE = "file", "dir", "symlink", "hardlink", "other", "whiteout", "opaque"


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One layer member: `path` without a leading slash; for WHITEOUT the path it deletes,
    for OPAQUE the directory it empties. `size` is the tar header size (0 for non-files)."""

    path: str
    kind: str
    size: int
    linkname: str = ""


class CountingReader:
    """Wraps a binary stream and counts the bytes read through it (the uncompressed tar size)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def normalize(name: str, *, where: str) -> str:
    """A member name as a relative path ('' for the root); a `..` that climbs out is an error."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ImageFormatError(f"{where}: tar member {name!r} escapes the layer root")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return FILE
    if member.isdir():
        return DIR
    if member.issym():
        return SYMLINK
    if member.islnk():
        return HARDLINK
    return OTHER


def read_entries(stream: BinaryIO, *, where: str) -> Iterator[TarEntry]:
    """Yield the members of an uncompressed layer tar, front to back, never seeking."""
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                path = normalize(member.name, where=where)
                if not path:
                    continue
                base = posixpath.basename(path)
                if base == WH_OPAQUE:
                    yield TarEntry(posixpath.dirname(path), OPAQUE, 0)
                elif base.startswith(WH_PREFIX):
                    yield TarEntry(posixpath.join(posixpath.dirname(path), base[len(WH_PREFIX):]), WHITEOUT, 0)
                else:
                    kind = _kind(member)
                    size = member.size if kind == FILE else 0
                    yield TarEntry(path, kind, size, member.linkname if kind in (SYMLINK, HARDLINK) else "")
    except tarfile.TarError as exc:
        raise ImageFormatError(f"{where}: not a readable layer tar: {exc}") from exc
    except EOFError as exc:
        raise ImageFormatError(f"{where}: layer tar is truncated") from exc


class Node:
    """A path in a `Tree`: its size, kind, the layer that last wrote it, and children if a dir."""

    __slots__ = ("size", "kind", "layer", "children")

    def __init__(self, size: int, kind: str, layer: int) -> None:
        self.size, self.kind, self.layer = size, kind, layer
        self.children: dict[str, Node] | None = {} if kind == DIR else None

    def walk(self, prefix: str) -> Iterator[tuple[str, Node]]:
        """This node's descendants (not itself) as (path, node), depth first."""
        for name, child in (self.children or {}).items():
            path = f"{prefix}/{name}" if prefix else name
            yield path, child
            if child.children:
                yield from child.walk(path)

    def subtree_size(self) -> int:
        """This node's size plus every descendant's."""
        return self.size + sum(n.size for _, n in self.walk(""))


class Tree:
    """A stacked filesystem of sizes. `get`, `put` and `remove` take relative paths."""

    def __init__(self) -> None:
        self.root = Node(0, DIR, -1)

    def get(self, path: str) -> Node | None:
        node = self.root
        for name in path.split("/"):
            if node.children is None:
                return None
            nxt = node.children.get(name)
            if nxt is None:
                return None
            node = nxt
        return node

    def parent(self, path: str, *, create: bool, layer: int) -> Node | None:
        """The directory that holds `path`; missing parents are made (size 0) when `create`."""
        node = self.root
        if "/" not in path:
            return node
        for name in path.rsplit("/", 1)[0].split("/"):
            children = node.children
            if children is None:
                if not create:
                    return None
                node.children = children = {}
            nxt = children.get(name)
            if nxt is None:
                if not create:
                    return None
                nxt = children[name] = Node(0, DIR, layer)
            node = nxt
        return node

    def remove(self, path: str) -> Node | None:
        """Detach and return the node at `path` (with its subtree), or None."""
        parent = self.parent(path, create=False, layer=-1)
        if parent is None or parent.children is None:
            return None
        return parent.children.pop(path.rsplit("/", 1)[-1], None)

    def walk(self) -> Iterator[tuple[str, Node]]:
        return self.root.walk("")
