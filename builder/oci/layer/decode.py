"""Entries from tar bytes: ustar, PAX and GNU long names, read as a stream.

Every tar is treated as hostile here too: checksums are verified, extended headers are bounded,
and only the entry types a layer may hold are accepted. Names come out as stored: confining
them to a root is `entry.split_name`'s job.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import IO, Callable, Iterator

from builder.errors import ImageFormatError
from builder.oci.layer import gnusparse
from builder.oci.layer.entry import CHUNK, REG, TYPES, Header

__all__ = ["iter_tar"]


class _Source:
    """Buffered reads of exact sizes from a stream, with a byte offset for error messages."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def read(self, n: int) -> bytes:
        """Up to n bytes (possibly fewer; none only at the end of the stream)."""
        if self._pos == len(self._buf):
            if n >= CHUNK:
                data = self._raw.read(n)
                self.offset += len(data)
                return data
            self._buf, self._pos = self._raw.read(CHUNK), 0
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        self.offset += len(data)
        return data

    def upto(self, n: int) -> bytes:
        """n bytes, or fewer only at the end of the stream."""
        data = self.read(n)
        while len(data) < n and (more := self.read(n - len(data))):
            data += more
        return data

    def exact(self, n: int, what: str) -> bytes:
        data = self.upto(n)
        if len(data) < n:
            raise ImageFormatError(f"tar is truncated: unexpected end of data in {what} at byte {self.offset}")
        return data


def _parse_num(field: bytes, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU)
        value = int.from_bytes(field[1:], "big")
        return value if field[:1] == b"\x80" else value - (1 << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ImageFormatError(f"tar header has a malformed {what} field {field!r}") from None


def _pax_num(pax: dict[bytes, bytes], key: bytes, field: bytes) -> int:
    """A numeric field: its PAX record when there is one, else the header's; never negative but mtime."""
    what = key.decode()
    if not pax.get(key):
        value = _parse_num(field, what)
    else:
        try:
            value = int(float(pax[key])) if key == b"mtime" else int(pax[key])
        except (ValueError, OverflowError):
            raise ImageFormatError(f"tar has a malformed PAX {what} record {pax[key][:40]!r}") from None
    if value < 0 and key != b"mtime":
        raise ImageFormatError(f"tar header has a negative {what} ({value})")
    return value


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    sparse_map: list[bytes] = []
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageFormatError("tar has a malformed PAX header") from None
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ImageFormatError("tar has a malformed PAX header")
        key, value = record[:-1].split(b"=", 1)
        if key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):  # GNU sparse 0.0: repeated, in order
            sparse_map.append(value)  # kept as the 0.1 form's map, as Go's archive/tar does
            out[b"GNU.sparse.map"] = b",".join(sparse_map)
        else:
            out[key] = value
        pos += length
    return out


def iter_tar(stream: IO[bytes]) -> Iterator[tuple[Header, Callable[[int], bytes]]]:
    """Entries of a tar stream (ustar, PAX, GNU long names) with a reader of each one's data.

    The reader must be used before the next entry is requested; unread data is skipped.
    Names are returned as stored (not yet checked: see `split_name`).
    """
    src = _Source(stream)
    pending: dict[bytes, bytes] = {}
    first = True
    while True:
        block = src.upto(512)
        if len(block) < 512:
            if not block and not first:
                return  # a missing end-of-archive marker is tolerated, as GNU tar does
            if not block:
                raise ImageFormatError("not a tar archive: it is empty")
            raise ImageFormatError(f"tar is truncated: partial header at byte {src.offset - len(block)}")
        first = False
        if block == b"\0" * 512:
            return
        try:
            stored = _parse_num(block[148:156], "checksum")
        except ImageFormatError:
            stored = -1
        if stored != sum(block[:148]) + 256 + sum(block[156:]):
            raise ImageFormatError(f"not a tar archive, or corrupt: bad header checksum at byte {src.offset - 512}")
        typ = block[156:157]
        typ = REG if typ in (b"\0", b"7") else typ
        size = _parse_num(block[124:136], "size")
        if typ in (b"x", b"g", b"L", b"K"):
            if size > 1 << 20:
                raise ImageFormatError(f"tar has an oversized {typ.decode()} header ({size} bytes)")
            data = src.exact(size + (-size % 512), "an extended header")[:size]
            if typ == b"x":
                pending.update(_parse_pax(data))
            elif typ == b"L":
                pending[b"path"] = data.split(b"\0", 1)[0]
            elif typ == b"K":
                pending[b"linkpath"] = data.split(b"\0", 1)[0]
            continue
        sparse_block = block if typ == gnusparse.GNU_SPARSE else None
        if sparse_block is not None:
            typ = REG
        if typ not in TYPES:
            raise ImageFormatError(f"tar entry type {typ!r} is not supported (at byte {src.offset - 512})")
        name = block[0:100].split(b"\0", 1)[0]
        if block[257:263] == b"ustar\0" and block[345:346] != b"\0":  # POSIX only: GNU headers hold times there
            name = block[345:500].split(b"\0", 1)[0] + b"/" + name
        linkname = block[157:257].split(b"\0", 1)[0]
        h = Header(
            name=os.fsdecode(pending.get(b"path", name)), type=typ, mode=_parse_num(block[100:108], "mode") & 0o7777,
            uid=_pax_num(pending, b"uid", block[108:116]), gid=_pax_num(pending, b"gid", block[116:124]),
            size=_pax_num(pending, b"size", block[124:136]), mtime=_pax_num(pending, b"mtime", block[136:148]),
            linkname=os.fsdecode(pending.get(b"linkpath", linkname)),
            devmajor=_parse_num(block[329:337], "devmajor"), devminor=_parse_num(block[337:345], "devminor"),
            xattrs=tuple(sorted((os.fsdecode(k[13:]), v) for k, v in pending.items()
                                if k.startswith(b"SCHILY.xattr."))),
        )
        pax, pending = pending, {}
        if h.type != REG:
            h = replace(h, size=0)  # only regular files carry data (hardlinks' sizes are ignored)
        stored = h.size  # the data bytes after the header (a sparse member's are fewer than its size)
        left = [stored]

        def raw(n: int, left: list[int] = left, name: str = h.name) -> bytes:
            n = min(n, left[0])
            if n <= 0:
                return b""
            data = src.read(n)
            if not data:
                raise ImageFormatError(f"tar is truncated: unexpected end of data in {name!r}")
            left[0] -= len(data)
            return data

        read: Callable[[int], bytes] = raw
        if sparse_block is not None or (h.type == REG and gnusparse.is_pax_sparse(pax)):
            h, read = _sparse(h, sparse_block, pax, raw, src)
        yield h, read
        while left[0]:
            raw(CHUNK)
        src.exact(-stored % 512, "padding")


def _sparse(h: Header, block: bytes | None, pax: dict[bytes, bytes], raw: Callable[[int], bytes],
            src: _Source) -> tuple[Header, Callable[[int], bytes]]:
    """A GNU sparse member as the plain file it stands for: its real name and size, holes read as zeros."""
    if block is not None:
        segments, size = gnusparse.old_gnu_map(block, lambda: src.exact(512, "a GNU sparse header"), h.name)
        used = 0
    else:
        segments, size, used = gnusparse.pax_map(pax, raw, h.name)
        if b"GNU.sparse.name" in pax:
            h = replace(h, name=os.fsdecode(pax[b"GNU.sparse.name"]))
    return replace(h, size=size), gnusparse.reader(raw, segments, size, h.size - used, h.name)
