"""Tar bytes from entries: ustar headers (PAX records only when needed) and a buffered writer.

The encoding is part of the on-disk format: layer digests depend on every byte written here.
"""

from __future__ import annotations

import os
from typing import Callable

from builder.oci.layer.entry import CHUNK, DIR, REG, Header

__all__ = ["encode_header", "TarWriter", "Sink"]

Sink = Callable[[bytes], object]


def _num(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: bytes, value: bytes) -> bytes:
    base = len(key) + len(value) + 3  # " " "=" "\n"
    n = len(str(base))
    while len(str(base + n)) != n:
        n += 1
    return b"%d %s=%s\n" % (base + n, key, value)


_USTAR_MAGIC_TO_DEV = b"ustar\x0000" + b"\0" * 64  # magic, version, empty uname and gname


def _ustar(name: bytes, prefix: bytes, h: Header, linkname: bytes, size: int, typ: bytes,
           uid: int, gid: int, mtime: int) -> bytes:
    if h.devmajor >= 8 ** 7 or h.devminor >= 8 ** 7 or len(typ) != 1:
        return _ustar_fields(name, prefix, h, linkname, size, typ, uid, gid, mtime)
    # one formatting pass (the hot path of committing many small files); same bytes as _ustar_fields
    block = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%s%s%07o\0%07o\0%s\0\0\0\0\0\0\0\0\0\0\0\0" % (
        name.ljust(100, b"\0"), h.mode & 0o7777, uid, gid, size, mtime, typ, linkname.ljust(100, b"\0"),
        _USTAR_MAGIC_TO_DEV, h.devmajor, h.devminor, prefix.ljust(155, b"\0"))
    return b"%s%06o\0 %s" % (block[:148], sum(block), block[156:])


def _ustar_fields(name: bytes, prefix: bytes, h: Header, linkname: bytes, size: int, typ: bytes,
                  uid: int, gid: int, mtime: int) -> bytes:
    buf = bytearray(512)
    buf[0:len(name)] = name
    buf[100:108] = _num(h.mode & 0o7777, 8)
    buf[108:116] = _num(uid, 8)
    buf[116:124] = _num(gid, 8)
    buf[124:136] = _num(size, 12)
    buf[136:148] = _num(mtime, 12)
    buf[148:156] = b"        "
    buf[156:157] = typ
    buf[157:157 + len(linkname)] = linkname
    buf[257:265] = b"ustar\x0000"
    buf[329:337] = _num(h.devmajor, 8)
    buf[337:345] = _num(h.devminor, 8)
    buf[345:345 + len(prefix)] = prefix
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    if len(name) <= 100:
        return b"", name
    for i in range(min(len(name) - 1, 155), 0, -1):
        if name[i:i + 1] == b"/" and len(name) - i - 1 <= 100:
            return name[:i], name[i + 1:]
    return None


def encode_header(h: Header) -> bytes:
    """The header block(s) of an entry: ustar, preceded by a PAX header only when needed."""
    name = os.fsencode(h.name + "/" if h.type == DIR and not h.name.endswith("/") else h.name)
    link = os.fsencode(h.linkname)
    pax: list[tuple[bytes, bytes]] = []
    split = _split_ustar(name)
    if split is None:
        pax.append((b"path", name))
        split = (b"", name[:100])
    if len(link) > 100:
        pax.append((b"linkpath", link))
        link = link[:100]
    uid, gid, size, mtime = h.uid, h.gid, h.size, max(h.mtime, 0)
    if uid >= 8 ** 7:
        pax.append((b"uid", b"%d" % uid))
        uid = 0
    if gid >= 8 ** 7:
        pax.append((b"gid", b"%d" % gid))
        gid = 0
    if size >= 8 ** 11:
        pax.append((b"size", b"%d" % size))
        size = 0
    if mtime >= 8 ** 11:
        pax.append((b"mtime", b"%d" % mtime))
        mtime = 0
    for key, value in h.xattrs:
        pax.append((b"SCHILY.xattr." + os.fsencode(key), value))
    out = b""
    if pax:
        payload = b"".join(_pax_record(k, v) for k, v in pax)
        ph = Header("././@PaxHeader", b"x")
        out = _ustar(b"././@PaxHeader", b"", ph, b"", len(payload), b"x", 0, 0, 0) + payload + _pad(len(payload))
    return out + _ustar(split[1], split[0], h, link, size, h.type, uid, gid, mtime)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 512)


class TarWriter:
    """Writes tar entries to a sink, buffered into chunks of about 1 MiB."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buf = bytearray()

    def _out(self, data: bytes) -> None:
        if len(data) >= CHUNK:
            self.flush()
            self._sink(data)
            return
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Hand what is buffered to the sink."""
        if self._buf:
            self._sink(bytes(self._buf))
            self._buf = bytearray()

    def add(self, h: Header, read: Callable[[int], bytes] | None = None) -> None:
        """Add an entry; for a regular file, `read(n)` supplies exactly `h.size` bytes."""
        self._out(encode_header(h))
        if h.type != REG or not h.size:
            return
        left = h.size
        while left:
            data = read(min(left, CHUNK)) if read else b""
            if not data:  # the file shrank while we read it: keep the header honest
                data = b"\0" * min(left, CHUNK)
            data = data[:left]
            left -= len(data)
            self._out(data)
        self._out(_pad(h.size))

    def add_data(self, h: Header, data: bytes) -> None:
        """`add` of a regular file whose bytes were read already (`data`, at most `h.size` of them:
        zeros make up the rest, as `add` does for a file that shrank): one buffer append."""
        buf = self._buf
        buf += encode_header(h)
        buf += data
        if len(data) < h.size:
            buf += bytes(h.size - len(data))
        buf += _pad(h.size)
        if len(buf) >= CHUNK:
            self.flush()

    def close(self) -> None:
        """End the archive (two zero blocks) and flush; the sink itself is not closed."""
        self._out(b"\0" * 1024)
        self.flush()
