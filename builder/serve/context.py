"""A build context tar checked as it arrives: `TarScanner` reads the headers of the (decompressed)
stream chunk by chunk, refuses what could write outside the context directory or is not a plain
file tree, and hashes each regular file's data on the way (one pass, no second read of the tar).
After the tar is unpacked, `prime_statcache` gives those digests to the build's stat cache, so the
build does not read every file again to checksum what COPY takes.

Refused (400): absolute or `..` names, hard links out of the context, a member below a symbolic
link member, devices and FIFOs, member types GNU tar would treat otherwise (sparse files, volume
labels), a bad header checksum, a stream ending inside a member's data, undecodable compression.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import zlib
from pathlib import Path
from typing import Any

from builder.serve.api import ApiError

_REGULAR = (b"0", b"\0", b"7")
_KNOWN = _REGULAR + (b"1", b"2", b"5")
_DEVICES = (b"3", b"4", b"6")
_ZERO_BLOCK = bytes(512)


def _bad(message: str) -> ApiError:
    return ApiError(400, f"invalid build context: {message}")


class TarScanner:
    """Feed it the request body as it comes (`feed`), then `finish()`: raises ApiError(400) at the
    first bad member; `digests` maps each regular file's clean path to its sha256 (bytes)."""

    def __init__(self) -> None:
        self.digests: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}
        self.decompress: Any = None
        self.sniffed = False
        self.buf = bytearray()
        self.left = 0  # data bytes of the current member still to come
        self.pad = 0  # its padding after them
        self.hash: Any = None
        self.special = b""  # the type of an x/L/K header whose data is being collected
        self.special_data = bytearray()
        self.pax: dict[str, str] = {}
        self.long_name = self.long_link = ""
        self.links: set[str] = set()
        self.ended = False
        self.current = ""

    def feed(self, chunk: bytes) -> None:
        if not self.sniffed:
            self._sniff(chunk)
        if self.decompress is not None:
            try:
                chunk = self.decompress.decompress(chunk)
            except (zlib.error, OSError, EOFError, ValueError) as exc:
                raise _bad(f"not a readable compressed tar archive ({exc})") from None
        self._scan(memoryview(chunk))

    def _sniff(self, head: bytes) -> None:
        self.sniffed = True
        if head.startswith(b"\x1f\x8b"):
            self.decompress = zlib.decompressobj(wbits=47)
        elif head.startswith(b"BZh"):
            import bz2

            self.decompress = bz2.BZ2Decompressor()
        elif head.startswith(b"\xfd7zXZ"):
            import lzma

            self.decompress = lzma.LZMADecompressor()
        elif head.startswith(b"\x28\xb5\x2f\xfd"):
            raise _bad("zstd-compressed contexts are not supported: send a plain or gzip tar")

    def _scan(self, data: memoryview) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self.left:
                take = min(self.left, n - pos)
                piece = data[pos:pos + take]
                if self.hash is not None:
                    self.hash.update(piece)
                elif self.special:
                    if len(self.special_data) + take > 1 << 20:
                        raise _bad("an extended header larger than 1 MiB")
                    self.special_data += piece
                self.left -= take
                pos += take
                if not self.left:
                    self._member_done()
                continue
            if self.pad:
                take = min(self.pad, n - pos)
                self.pad -= take
                pos += take
                continue
            if self.ended:
                return  # what follows the end blocks is not read, as GNU tar
            if not self.buf and n - pos >= 512:  # a whole header in this chunk: no copy into buf
                self._header(bytes(data[pos:pos + 512]))
                pos += 512
                continue
            take = min(512 - len(self.buf), n - pos)
            self.buf += data[pos:pos + take]
            pos += take
            if len(self.buf) == 512:
                block = bytes(self.buf)
                self.buf.clear()
                self._header(block)

    def _header(self, block: bytes) -> None:
        if block == _ZERO_BLOCK:
            self.ended = True
            return
        stored = _number(block[148:156])
        if stored is None or stored != sum(block[:148]) + 256 + sum(block[156:]):
            raise _bad("not a readable tar archive (bad header checksum)")
        kind = block[156:157]
        size = _number(block[124:136])
        if size is None or size < 0:
            raise _bad("not a readable tar archive (bad member size)")
        if "size" in self.pax:
            try:
                size = int(self.pax["size"])
            except ValueError:
                raise _bad("not a readable tar archive (bad pax size)") from None
        self.left, self.pad = size, -size % 512
        if kind in (b"x", b"g", b"L", b"K"):
            self.special = kind
            self.special_data.clear()
            if not size:
                self._member_done()
            return
        name = self.pax.get("path") or self.long_name or _text(block[:100])
        if block[257:262] == b"ustar" and not (self.pax.get("path") or self.long_name) and block[345:500].strip(b"\0"):
            name = _text(block[345:500]) + "/" + name
        link = self.pax.get("linkpath") or self.long_link or _text(block[157:257])
        self.pax, self.long_name, self.long_link = {}, "", ""
        clean = posixpath.normpath(name) if name else ""
        self._check(name, clean, link, kind)
        self.current = clean
        if kind in _REGULAR:
            self.hash = hashlib.sha256()
            self.sizes[clean] = size
        else:
            self.hash = None
            self.digests.pop(clean, None)  # replaced by something else
            if kind == b"2":
                self.links.add(clean)
        if not size:
            self._member_done()

    def _check(self, name: str, clean: str, link: str, kind: bytes) -> None:
        """Refuse the member `name` (`clean`: normalised) of type `kind` (a hard link's target `link`)."""
        for path, norm in ((name, clean), (link, posixpath.normpath(link.lstrip("/")) if link else "")
                           if kind == b"1" else ("", "")):
            if path.startswith("/") or norm == ".." or norm.startswith("../"):
                raise _bad(f"member {path!r} points outside the context")
        if self.links:
            parts = clean.split("/")
            if any("/".join(parts[:i]) in self.links for i in range(1, len(parts))):
                raise _bad(f"member {name!r} lies below a symbolic link")
        if kind in _DEVICES:
            raise _bad(f"member {name!r} is a device or a FIFO")
        if kind not in _KNOWN:
            raise _bad(f"member {name!r} has tar type {kind!r}, which a build context cannot hold")

    def _member_done(self) -> None:
        if self.special:
            data, kind = bytes(self.special_data), self.special
            self.special = b""
            if kind == b"x":
                self.pax = _pax(data)
            elif kind == b"L":
                self.long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"K":
                self.long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            return  # a global (g) header changes no name here
        if self.hash is not None:
            self.digests[self.current] = self.hash.digest()
            self.hash = None

    def finish(self) -> None:
        """The body ended: only at a member boundary (its padding and the end blocks may be missing:
        the docker CLI's `build -f-` sends none, dockerd accepts that)."""
        if self.decompress is not None and not getattr(self.decompress, "eof", True):
            raise _bad("not a readable tar archive (the compressed stream is cut short)")
        if self.left or self.special or (self.buf and not self.ended):
            raise _bad(f"the tar ends inside member {self.current!r}" if self.left else
                       "not a readable tar archive (it ends inside a header)")
        if not self.sniffed:
            raise _bad("not a readable tar archive (the body is empty)")


def _number(field: bytes) -> int | None:
    """A tar number: octal text, or GNU's base-256 (high bit set)."""
    if field[:1] and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header (`LEN key=value\\n`)."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _bad("not a readable tar archive (bad pax header)") from None
        if length <= 0 or space < 0:
            raise _bad("not a readable tar archive (bad pax header)")
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Root:
    """What `StatCache.for_root` keys a cache by: the root's layer directories."""

    def __init__(self, path: Path) -> None:
        self.layers = [path]


def prime_statcache(context: Path, digests: dict[str, bytes], sizes: dict[str, int]) -> int:
    """Give the build's stat cache the digests of the files just unpacked into `context` (a directory
    only this server writes, once), so the build reads none of them to checksum them. Only regular
    files of the size the tar said are entered; returns how many."""
    import stat

    from builder.cache.stat import StatCache

    cache = StatCache.for_root(_Root(context))
    base = str(context) + "/"
    lstat, is_reg, size_of, remember = os.lstat, stat.S_ISREG, sizes.get, cache.remember
    n = 0
    for name, digest in digests.items():
        try:
            st = lstat(base + name)
        except OSError:
            continue
        if is_reg(st.st_mode) and st.st_size == size_of(name):
            remember(name, st, digest)
            n += 1
    cache.save()
    return n
