"""Compression: layer codecs (gzip, parallel pigz-style; zstd, multi-threaded; none) and the one sniffer.

Codecs are keyed by the media-type suffix (`+gzip`, `+zstd`, none). Compressors are
writers that push compressed bytes to a `sink(bytes)` callable; decompressors wrap a
readable stream. Everything streams with bounded memory.

Sniffing, from a stream's first bytes: `sniff` names any compression by its magic number
(gzip, zstd, bzip2, xz; bzip2 and xz are never layer codecs, but ADD and build contexts take
them), `detect` the codec to read a layer blob with, `is_tar` recognises an uncompressed tar.

Parallel gzip works as pigz does: the input is cut into blocks; each block is deflated in a
thread pool (zlib releases the GIL) as raw deflate primed with the previous 32 KiB as a
dictionary and ended with a sync flush, so the blocks join into one ordinary gzip member.
The output depends only on the data, the level and the block size, never on scheduling.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from types import ModuleType
from typing import IO, TYPE_CHECKING, Callable, Protocol

from builder.errors import ImageFormatError
from builder.oci.model import DOCKER_LAYER, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["Compressor", "compressor", "max_layer_size", "decompressing_reader", "codec_of", "media_type_for",
           "sniff", "detect", "is_tar", "GZIP", "ZSTD", "NONE", "BZIP2", "XZ", "SNIFF_BYTES", "TAR_SNIFF_BYTES",
           "DEFAULT_LEVEL", "LimitedReader"]

GZIP, ZSTD, NONE = "gzip", "zstd", "uncompressed"
BZIP2, XZ = "bzip2", "xz"  # recognised by `sniff` only: no layer is compressed with them
_MAGIC = ((GZIP, b"\x1f\x8b"), (ZSTD, b"\x28\xb5\x2f\xfd"), (BZIP2, b"BZh"), (XZ, b"\xfd7zXZ\x00"))
SNIFF_BYTES = 6  # leading bytes `sniff` needs to tell every codec (the longest magic, xz's)
TAR_SNIFF_BYTES = 262  # leading bytes `is_tar` needs (the ustar magic ends there)
DEFAULT_LEVEL = {GZIP: 6, ZSTD: 3, NONE: 0}
BLOCK = 1 << 20  # bytes per parallel gzip block
DICT = 32 << 10  # deflate window used to prime the next block
ZSTD_JOB = 2 << 20  # zstd job size: bounded memory (~60 MB for 2 workers; the 8 MiB default needs ~115 MB)
# gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS=unknown (255): no name, no time
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

Sink = Callable[[bytes], object]

# zstandard, zlib-ng and the thread pool are imported on first use: commands that never
# (de)compress a layer (`pybuild run`, a cached rebuild) do not pay for them.


def _zstd() -> ModuleType:
    import zstandard

    return zstandard


def _inflater() -> ModuleType:
    """zlib-ng when installed: it inflates the same streams ~2.3x faster than zlib (docs/DEVELOPING.md)."""
    try:
        from zlib_ng import zlib_ng

        return zlib_ng
    except ImportError:  # pragma: no cover - optional
        return zlib


def max_layer_size() -> int | None:
    """The cap on a layer's uncompressed size: $PYBUILD_MAX_LAYER_SIZE bytes, or None (no cap)."""
    value = os.environ.get("PYBUILD_MAX_LAYER_SIZE", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ImageFormatError(f"PYBUILD_MAX_LAYER_SIZE must be a number of bytes, got {value!r}")
    return int(value)


def codec_of(media_type: str) -> str:
    """The codec of a layer media type, from its suffix."""
    if media_type.endswith("+zstd"):
        return ZSTD
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip") or media_type == DOCKER_LAYER:
        return GZIP
    if media_type.endswith(".tar") or media_type.endswith(".tar.v1"):
        return NONE
    raise ImageFormatError(f"unsupported layer media type {media_type!r}")


def media_type_for(codec: str) -> str:
    """The OCI layer media type for a codec."""
    try:
        return {GZIP: OCI_LAYER_GZIP, ZSTD: OCI_LAYER_ZSTD, NONE: OCI_LAYER}[codec]
    except KeyError:
        raise ImageFormatError(f"unknown compression {codec!r}", hint="use gzip, zstd or uncompressed") from None


def sniff(head: bytes) -> str | None:
    """The compression of a stream from its first bytes, by magic number: GZIP, ZSTD, BZIP2 or XZ.

    None for anything else: uncompressed data, or fewer bytes than the magic (`SNIFF_BYTES`
    bytes always suffice). Only the magic is checked, not that the rest decompresses.
    """
    for codec, magic in _MAGIC:
        if head.startswith(magic):
            return codec
    return None


def detect(head: bytes) -> str:
    """The codec to read a layer blob with, from its first bytes: GZIP or ZSTD as `sniff` says, else NONE.

    A bzip2 or xz blob is NONE too: no layer codec, it is read as a tar and refused as not one.
    """
    codec = sniff(head)
    return codec if codec == GZIP or codec == ZSTD else NONE


def is_tar(head: bytes) -> bool:
    """Whether uncompressed data starting with `head` is a tar in ustar form (POSIX, PAX or GNU).

    Checks the `ustar` magic at offset 257, so `head` needs `TAR_SNIFF_BYTES` bytes; an old v7
    tar has no magic and is not recognised, and the header's checksum is not verified.
    """
    return head[257:262] == b"ustar"


class Compressor(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _Plain:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> None:
        if data:
            self._sink(data)

    def close(self) -> None:
        pass


class _Zstd:
    def __init__(self, sink: Sink, level: int, threads: int) -> None:
        self._sink = sink
        # Always multi-threaded (>= 1 worker) with a fixed job size: the output is then the same for
        # any number of threads (single-threaded mode would differ), and memory stays bounded.
        params = _zstd().ZstdCompressionParameters.from_level(level, threads=max(1, threads), job_size=ZSTD_JOB,
                                                                write_content_size=False)
        self._obj = _zstd().ZstdCompressor(compression_params=params).compressobj()

    def write(self, data: bytes) -> None:
        out = self._obj.compress(data)
        if out:
            self._sink(out)

    def close(self) -> None:
        self._sink(self._obj.flush())


def _deflate_block(data: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    obj = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict) if zdict \
        else zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    out = obj.compress(data)
    return out + obj.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


_ZERO_BLOCK, _ZERO_DICT = bytes(BLOCK), bytes(DICT)
_ZERO_DEFLATED: dict[int, bytes] = {}  # level -> a zero block deflated after zeros: the same bytes every time


class _ParallelGzip:
    """pigz-style gzip: blocks deflated in threads, joined in order into one member."""

    def __init__(self, sink: Sink, level: int, threads: int) -> None:
        self._sink, self._level = sink, level
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip") if threads > 1 else None
        self._pending: deque[Future[bytes] | bytes] = deque()
        self._max_pending = max(2, threads * 2)
        self._buf = bytearray()
        self._held: bytes | None = None  # the last whole block written, when the stream is block-aligned
        self._prev_tail = b""
        self._crc = 0
        self._size = 0
        sink(_GZIP_HEADER)

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        if not self._buf and type(data) is bytes and len(data) == BLOCK:  # block-aligned: no copies
            if self._held is not None:
                self._submit(self._held, last=False)
            self._held = data
            return
        if self._held is not None:
            self._buf[:0], self._held = self._held, None
        self._buf += data
        while len(self._buf) > BLOCK:  # keep the last block back: it must be the one that finishes
            block = bytes(self._buf[:BLOCK])
            del self._buf[:BLOCK]
            self._submit(block, last=False)

    def _submit(self, block: bytes, last: bool) -> None:
        zdict, self._prev_tail = self._prev_tail, block[-DICT:]
        if not last and zdict == _ZERO_DICT and block == _ZERO_BLOCK:  # a sparse file's holes: deflated once
            if self._level not in _ZERO_DEFLATED:
                _ZERO_DEFLATED[self._level] = _deflate_block(block, zdict, self._level, False)
            self._pending.append(_ZERO_DEFLATED[self._level])
        elif self._pool is None:
            self._pending.append(_deflate_block(block, zdict, self._level, last))
        else:
            self._pending.append(self._pool.submit(_deflate_block, block, zdict, self._level, last))
        while len(self._pending) > self._max_pending:
            self._emit_one()

    def _emit_one(self) -> None:
        item = self._pending.popleft()
        self._sink(item if isinstance(item, bytes) else item.result())

    def close(self) -> None:
        if self._held is not None:  # (then nothing is buffered)
            self._buf, self._held = bytearray(self._held), None
        self._submit(bytes(self._buf), last=True)
        self._buf = bytearray()
        while self._pending:
            self._emit_one()
        if self._pool is not None:
            self._pool.shutdown()
        self._sink(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))


def compressor(codec: str, sink: Sink, level: int | None = None, threads: int | None = None) -> Compressor:
    """A streaming compressor for `codec` that writes compressed bytes to `sink`."""
    threads = threads or os.cpu_count() or 1
    level = DEFAULT_LEVEL.get(codec, 0) if level is None else level
    if codec == GZIP:
        if not 0 <= level <= 9:
            raise ImageFormatError(f"gzip compression level must be 0-9, got {level}")
        return _ParallelGzip(sink, level, threads)
    if codec == ZSTD:
        if not -7 <= level <= 22:
            raise ImageFormatError(f"zstd compression level must be -7..22, got {level}")
        return _Zstd(sink, level, threads)
    if codec == NONE:
        return _Plain(sink)
    raise ImageFormatError(f"unknown compression {codec!r}", hint="use gzip, zstd or uncompressed")


class _Reader:
    """Shared bits of our readers: readable, context manager."""

    def readable(self) -> bool:
        return True

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class LimitedReader(_Reader):
    """A reader that fails once more than `limit` bytes come out (a cap against bombs)."""

    def __init__(self, raw: IO[bytes], limit: int | None, what: str = "layer") -> None:
        self._raw, self._limit, self._what, self.count = raw, limit, what, 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        if self._limit is not None and self.count > self._limit:
            raise ImageFormatError(f"{self._what} is larger than the limit of {self._limit} bytes uncompressed",
                                   hint="a decompression bomb, or raise PYBUILD_MAX_LAYER_SIZE")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


class _GzipReader(_Reader):
    """Multi-member gzip decompression of a stream; errors become ImageFormatError."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflate = _inflater()
        self._d = self._inflate.decompressobj(16 + 15)
        self._out = bytearray()
        self._eof = False
        self._in_member = False

    def _feed(self, chunk: bytes) -> None:
        while chunk:
            if self._d.eof:  # the next member starts (or zero padding follows the last one)
                if chunk.strip(b"\0") == b"":
                    return
                self._d = self._inflate.decompressobj(16 + 15)
            self._in_member = True
            self._out += self._d.decompress(chunk, 1 << 20)
            if not self._d.eof:
                return  # what is left waits in unconsumed_tail
            self._in_member = False
            chunk = self._d.unused_data

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._out) < n):
            chunk = self._d.unconsumed_tail or self._raw.read(1 << 20)
            if not chunk:
                if self._in_member:
                    raise ImageFormatError("gzip stream is truncated")
                self._eof = True
                break
            try:
                self._feed(chunk)
            except (zlib.error, self._inflate.error) as exc:
                raise ImageFormatError(f"corrupt gzip data: {exc}") from None
        if n < 0 or n >= len(self._out):
            data = bytes(self._out)
            self._out = bytearray()
            return data
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


class _ZstdReader(_Reader):
    def __init__(self, raw: IO[bytes]) -> None:
        self._r = _zstd().ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)

    def read(self, n: int = -1) -> bytes:
        try:
            return self._r.read(n) if n >= 0 else self._r.readall()
        except _zstd().ZstdError as exc:
            raise ImageFormatError(f"corrupt zstd data: {exc}") from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._r.close()


def decompressing_reader(raw: IO[bytes], codec: str, limit: int | None = None) -> IO[bytes]:
    """A reader of the uncompressed bytes of `raw`, failing past `limit` bytes."""
    if codec == GZIP:
        inner: IO[bytes] = _GzipReader(raw)  # type: ignore[assignment]
    elif codec == ZSTD:
        inner = _ZstdReader(raw)  # type: ignore[assignment]
    elif codec == NONE:
        inner = raw
    else:
        raise ImageFormatError(f"unknown compression {codec!r}")
    return LimitedReader(inner, limit) if limit is not None else inner  # type: ignore[return-value]
