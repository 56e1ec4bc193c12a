"""GNU sparse tar members (the old GNU 'S' type and the PAX GNU.sparse 0.1 and 1.0 forms), read
as plain files whose holes come out as zeros, as Go's archive/tar (containerd, BuildKit) reads them.

A sparse member stores only its data segments; `segments` lists them as (offset, length) in the
file, and `reader` serves the file's bytes in order, zeros between segments. Every map is checked:
segments in order, not overlapping, inside the file, and their lengths summing to the stored data.
"""

from __future__ import annotations

from typing import Callable

from builder.errors import ImageFormatError
from builder.oci.layer.entry import CHUNK

__all__ = ["GNU_SPARSE", "old_gnu_map", "pax_map", "reader", "is_pax_sparse"]

GNU_SPARSE = b"S"
MAX_SEGMENTS = 1 << 20  # more than any real file's map; bounds the memory a hostile map takes
_ZEROS = bytes(CHUNK)

Segments = list[tuple[int, int]]


def _num(field: bytes, name: str) -> int:
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ImageFormatError(f"tar entry {name!r} has a malformed GNU sparse map") from None


def old_gnu_map(block: bytes, next_block: Callable[[], bytes], name: str) -> tuple[Segments, int]:
    """The map and real size of an old GNU sparse header: 4 entries in the header, 21 in each
    extension block that follows it (`next_block()` reads one)."""
    segments: Segments = []

    def take(area: bytes, count: int) -> None:
        for k in range(count):
            entry = area[k * 24:k * 24 + 24]
            if entry[:1] == b"\0":
                return
            segments.append((_num(entry[:12], name), _num(entry[12:], name)))
            if len(segments) > MAX_SEGMENTS:
                raise ImageFormatError(f"tar entry {name!r}: GNU sparse map of more than {MAX_SEGMENTS} segments")

    take(block[386:482], 4)
    extended = block[482] != 0
    while extended:
        ext = next_block()
        take(ext[:504], 21)
        extended = ext[504] != 0
    return segments, _num(block[483:495], name)


def is_pax_sparse(pax: dict[bytes, bytes]) -> bool:
    return b"GNU.sparse.major" in pax or b"GNU.sparse.map" in pax or b"GNU.sparse.numblocks" in pax


def _int(value: bytes | None, name: str) -> int:
    try:
        n = int(value or b"")
    except ValueError:
        raise ImageFormatError(f"tar entry {name!r} has a malformed GNU sparse map") from None
    if n < 0:
        raise ImageFormatError(f"tar entry {name!r} has a malformed GNU sparse map")
    return n


def pax_map(pax: dict[bytes, bytes], read_raw: Callable[[int], bytes], name: str) -> tuple[Segments, int, int]:
    """(map, real size, bytes of the stored data the map itself took) of a PAX sparse member:
    version 1.0 keeps its map at the start of the data (decimal lines, padded to 512 bytes),
    0.1 in GNU.sparse.map. Version 0.0 (repeated offset/numbytes records) is refused."""
    major, minor = pax.get(b"GNU.sparse.major"), pax.get(b"GNU.sparse.minor")
    if (major, minor) == (b"1", b"0"):
        size = _int(pax.get(b"GNU.sparse.realsize"), name)
        numbers: list[int] = []
        buf, used, count = b"", 0, -1
        while count < 0 or len(numbers) < 2 * count:
            if b"\n" not in buf:
                if len(buf) > 64:
                    raise ImageFormatError(f"tar entry {name!r} has a malformed GNU sparse map")
                block = read_raw(512)
                if len(block) < 512:
                    raise ImageFormatError(f"tar is truncated: unexpected end of data in {name!r}")
                buf += block
                used += 512
                continue
            line, buf = buf.split(b"\n", 1)
            if count < 0:
                count = _int(line, name)
                if count > MAX_SEGMENTS:
                    raise ImageFormatError(f"tar entry {name!r}: GNU sparse map of more than {MAX_SEGMENTS} segments")
            else:
                numbers.append(_int(line, name))
        return list(zip(numbers[::2], numbers[1::2])), size, used
    if b"GNU.sparse.map" in pax:
        size = _int(pax.get(b"GNU.sparse.size") or pax.get(b"GNU.sparse.realsize"), name)
        text = pax[b"GNU.sparse.map"]
        fields = [_int(v, name) for v in text.split(b",")] if text else []
        if len(fields) % 2 or len(fields) > 2 * MAX_SEGMENTS:
            raise ImageFormatError(f"tar entry {name!r} has a malformed GNU sparse map")
        return list(zip(fields[::2], fields[1::2])), size, 0
    raise ImageFormatError(f"tar entry {name!r}: GNU sparse format {(major or b'0.0').decode(errors='replace')}"
                           f"{'.' + minor.decode(errors='replace') if minor else ''} is not supported",
                           hint="repack it with GNU tar's default --sparse-version or without --sparse")


def reader(raw: Callable[[int], bytes], segments: Segments, size: int, stored: int,
           name: str) -> Callable[[int], bytes]:
    """A reader of the whole file (`size` bytes) from `raw`, the reader of its `stored` data bytes."""
    segs = [(o, n) for o, n in segments if n]
    end = 0
    for off, n in segs:
        if off < end or off + n > size:
            raise ImageFormatError(f"tar entry {name!r} has a GNU sparse map whose segments overlap or pass "
                                   f"the end of the file")
        end = off + n
    if sum(n for _, n in segs) != stored:
        raise ImageFormatError(f"tar entry {name!r}: its GNU sparse map covers "
                               f"{sum(n for _, n in segs)} bytes, but {stored} are stored")
    state = [0, 0]  # the file offset of the next byte, the index of the next segment

    def read(n: int) -> bytes:
        pos, i = state
        n = min(n, size - pos)
        if n <= 0:
            return b""
        if i < len(segs) and segs[i][0] <= pos:
            off, length = segs[i]
            data = raw(min(n, off + length - pos))
            pos += len(data)
            if pos == off + length:
                i += 1
        else:
            k = min(n, (segs[i][0] if i < len(segs) else size) - pos)
            data = _ZEROS if k == CHUNK else bytes(k)
            pos += k
        state[0], state[1] = pos, i
        return data

    return read
