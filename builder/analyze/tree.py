"""Layer tars as analysis sees them: members read in one streaming pass, and a stacked file tree.

A layer tar is read once, front to back, without extracting anything: each member becomes a
`TarEntry` (normalised path, kind, size). OCI whiteouts are named constants, as in umoci:
`.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` hides everything below in its
directory. `Tree` is a filesystem of sizes only (no content), cheap enough for 50,000 paths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO, Iterator

from builder.errors import ImageFormatError
from builder.oci.layer.whiteout import WH_OPAQUE, WH_PREFIX

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
    digest: str = ""  # sha256 of a file's contents, when asked for
    meta: str = ""  # "mode uid:gid" (mode in octal), when digests are asked for


class CountingReader:
    """Wraps a binary stream and counts the bytes read through it (the uncompressed tar size)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def normalize(name: str, *, where: str) -> str:
    """A member name as a relative path ('' for the root); a `..` that climbs out is an error."""
    if not (name.startswith(("/", ".")) or name.endswith("/") or "//" in name or "/." in name):
        return name  # already clean (the common case)
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


_REGULAR = (b"0", b"\0", b"7")  # regular, old regular, contiguous
_KINDS = {b"1": HARDLINK, b"2": SYMLINK, b"5": DIR}
_CHUNK = 1 << 20


def _number(field: bytes, where: str) -> int:
    """A tar numeric field: octal text, or base-256 when the high bit of the first byte is set."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ImageFormatError(f"{where}: bad numeric field {field!r} in a tar header") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes, where: str) -> dict[str, str]:
    """Records of a pax extended header: `LEN key=value\n`."""
    out, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageFormatError(f"{where}: malformed pax header") from None
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        if length <= 0:
            raise ImageFormatError(f"{where}: malformed pax header")
        pos += length
    return out


def scan_tar(stream: IO[bytes], *, where: str,
             digests: bool = False) -> Iterator[tuple[str, bytes, int, str, str, str]]:
    """Yield (name, typeflag, size, linkname, digest, meta) of each member of an uncompressed tar,
    reading it front to back in 1 MiB blocks and skipping file contents without copying them
    (with `digests`, a regular file's sha256 and "mode uid:gid" instead of ""). Handles ustar, pax (`x`, `g`) and
    GNU long names (`L`, `K`); reads the stream to its end."""
    buf, base, nxt = b"", 0, 0  # buf holds stream bytes [base, base + len(buf)); a header is due at nxt
    pax: dict[str, str] = {}
    long_name = long_link = None
    eof = False

    def fill(need: int, start: int | None = None) -> bool:
        """Buffer the bytes [start, nxt + need) (start defaults to nxt); False at end of stream."""
        nonlocal buf, base, eof
        start = nxt if start is None else start
        while base + len(buf) < nxt + need:
            chunk = stream.read(_CHUNK)
            if not chunk:
                eof = True
                return False
            if base + len(buf) <= start:  # all buffered bytes lie before what is needed: drop them
                base, buf = base + len(buf), chunk
            else:
                buf, base = buf[start - base:] + chunk, start
        return True

    def digest_of(pos: int, size: int) -> str:
        h = hashlib.sha256()
        end = pos + size
        while pos < end:
            if not fill(pos + 1 - nxt, pos):
                raise ImageFormatError(f"{where}: layer tar is truncated")
            piece = memoryview(buf)[pos - base:end - base]
            h.update(piece)
            pos += len(piece)
        return "sha256:" + h.hexdigest()

    while True:
        if not fill(512):
            if base + len(buf) > nxt or nxt > base + len(buf):
                raise ImageFormatError(f"{where}: layer tar is truncated")
            return  # ended on a member boundary without end-of-archive blocks: accepted, as tar does
        off = nxt - base
        header = buf[off:off + 512]
        if header.count(0) == 512:
            while stream.read(_CHUNK):  # end of archive; the rest (padding) is read, not parsed
                pass
            return
        if _number(header[148:156], where) != sum(header) - sum(header[148:156]) + 256:
            raise ImageFormatError(f"{where}: not a tar (bad header checksum at byte {nxt})")
        flag, size = header[156:157], _number(header[124:136], where)
        data_len = (size + 511) & ~511
        if flag in (b"x", b"g", b"L", b"K"):
            if size > 1 << 24:
                raise ImageFormatError(f"{where}: oversized tar extension header ({size} bytes)")
            if not fill(512 + size):
                raise ImageFormatError(f"{where}: layer tar is truncated")
            off = nxt - base
            data = buf[off + 512:off + 512 + size]
            if flag == b"x":
                pax = _pax(data, where)
            elif flag == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif flag == b"K":
                long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            nxt += 512 + data_len
            continue
        name = _text(header[0:100])
        if header[257:263] == b"ustar\x00" and header[345:346] != b"\0":
            name = _text(header[345:500]) + "/" + name
        name = pax.get("path", long_name or name)
        link = pax.get("linkpath", long_link or _text(header[157:257]))
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise ImageFormatError(f"{where}: bad pax size {pax['size']!r}") from None
            data_len = (size + 511) & ~511
        meta = ""
        if digests:
            uid, gid = (pax[k] if k in pax else str(_number(header[a:b], where)) for k, a, b in
                        (("uid", 108, 116), ("gid", 116, 124)))
            meta = f"{_number(header[100:108], where) & 0o7777:o} {uid}:{gid}"
        pax, long_name, long_link = {}, None, None
        regular = flag in _REGULAR or flag == b"S"
        yield name, flag, size, link, digest_of(nxt + 512, size) if digests and regular else "", meta
        nxt += 512 + (data_len if regular or flag not in (b"1", b"2", b"3", b"4", b"5", b"6") else 0)


def read_entries(stream: IO[bytes], *, where: str, digests: bool = False) -> Iterator[TarEntry]:
    """Yield the members of an uncompressed layer tar as TarEntries, front to back, never seeking
    (with `digests`, each regular file's sha256 too). Errors name `where`, those of the
    decompressing stream too."""
    try:
        yield from _entries(stream, where=where, digests=digests)
    except ImageFormatError as exc:
        if exc.message.startswith(where):
            raise
        raise ImageFormatError(f"{where}: {exc.message}", hint=exc.hint) from None


def _entries(stream: IO[bytes], *, where: str, digests: bool) -> Iterator[TarEntry]:
    for raw_name, flag, size, link, digest, meta in scan_tar(stream, where=where, digests=digests):
        path = normalize(raw_name, where=where)
        if not path:
            continue
        base = path.rsplit("/", 1)[-1]
        if base == WH_OPAQUE:
            yield TarEntry(path.rpartition("/")[0], OPAQUE, 0)
        elif base.startswith(WH_PREFIX):
            head = path.rpartition("/")[0]
            target = base[len(WH_PREFIX):]
            yield TarEntry(f"{head}/{target}" if head else target, WHITEOUT, 0)
        elif flag in _REGULAR:
            yield TarEntry(path, FILE, size, "", digest, meta)
        else:
            kind = _KINDS.get(flag, OTHER)
            yield TarEntry(path, kind, 0, link if kind in (SYMLINK, HARDLINK) else "", "", meta)


class Content:
    """The bytes of a regular file as one layer stored them, and how many visible paths (the file
    and its hard links) still show them."""

    __slots__ = ("size", "layer", "links")

    def __init__(self, size: int, layer: int) -> None:
        self.size, self.layer, self.links = size, layer, 1


class Node:
    """A path in a `Tree`: its size, kind, the layer that last wrote it, children if a dir, and
    for a regular file or a hard link the `Content` it shows (when the caller tracks it)."""

    __slots__ = ("size", "kind", "layer", "children", "content")

    def __init__(self, size: int, kind: str, layer: int) -> None:
        self.size, self.kind, self.layer = size, kind, layer
        self.children: dict[str, Node] | None = {} if kind == DIR else None
        self.content: Content | None = None

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
    """A stacked filesystem of sizes. `get`, `put` and `remove` take relative paths.

    Directory lookups are memoised; whoever detaches or replaces a node that may have children
    calls `forget()` (`remove` does it itself). A non-directory in the way of a new path is replaced
    by a directory and listed in `displaced`, for the caller to account."""

    def __init__(self) -> None:
        self.root = Node(0, DIR, -1)
        self._dirs: dict[str, Node] = {"": self.root}
        self.displaced: list[tuple[str, Node]] = []  # non-directories that `parent` replaced by one

    def forget(self) -> None:
        self._dirs = {"": self.root}

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
        head = path.rpartition("/")[0]
        node = self._dirs.get(head)
        if node is not None:
            return node
        node, at = self.root, ""
        for name in head.split("/"):
            children = node.children
            if children is None:
                return None
            at = f"{at}/{name}" if at else name
            nxt = children.get(name)
            if nxt is None or nxt.children is None:
                if not create:
                    return nxt if nxt is not None and at == head else None
                if nxt is not None:  # a non-directory where a directory must be: it is replaced
                    self.displaced.append((at, nxt))
                nxt = children[name] = Node(0, DIR, layer)
            node = nxt
        self._dirs[head] = node
        return node

    def remove(self, path: str) -> Node | None:
        """Detach and return the node at `path` (with its subtree), or None."""
        parent = self.parent(path, create=False, layer=-1)
        if parent is None or parent.children is None:
            return None
        node = parent.children.pop(path.rsplit("/", 1)[-1], None)
        if node is not None and node.children is not None:
            self.forget()
        return node

    def walk(self) -> Iterator[tuple[str, Node]]:
        return self.root.walk("")
