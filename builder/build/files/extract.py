"""ADD of a local archive: recognise a (compressed) tar by its content and unpack it safely.

    is_archive(path) -> bool          a tar, plain or gzip, bzip2, xz or zstd: what ADD unpacks
    extract_archive(stream, dest_dir, *, name, keep_owner=True, owner=None)   never escapes dest_dir
    extract_into(stream, writer, base, *, name, keep_owner=True)   ADD: into a layer, over the image

Compression is recognised by its magic bytes (`oci.compress.sniff`), as Docker and BuildKit do,
never by file name. Entries keep the archive's modes, and its owners unless an owner is given for all of them.
Member paths resolve as Docker's chrootarchive does (chrooted into the destination): a directory
the archive implies but does not list follows the image's symlinks (`bin/tool` lands in
`/usr/bin` when `/bin -> usr/bin`), while a listed entry replaces what is at its own path.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, BinaryIO, cast

from builder.build.files.writer import LayerWriter
from builder.build.fsview import split_path
from builder.errors import BuildError
from builder.oci import compress
from builder.util.sparse import SparseWriter

__all__ = ["extract_archive", "extract_into", "is_archive"]


def _open_decompressed(f: BinaryIO) -> BinaryIO:
    """A decompressing reader for gzip, bzip2, xz, zstd or plain data (by magic bytes)."""
    head = f.peek(compress.SNIFF_BYTES)[:compress.SNIFF_BYTES] if hasattr(f, "peek") else b""
    codec = compress.sniff(head)
    if codec == compress.GZIP:
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if codec == compress.BZIP2:
        return bz2.BZ2File(f)  # type: ignore[return-value]
    if codec == compress.XZ:
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    if codec == compress.ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True when `path` holds a tar archive, maybe compressed: what ADD unpacks (by content, as
    Docker decides, never by file name)."""
    try:
        with open(path, "rb") as raw:
            f = _open_decompressed(raw)
            block = f.read(512)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return False
    except Exception:  # zstandard.ZstdError and friends: not an archive we can read
        return False
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def extract_archive(stream: BinaryIO, dest_dir: Path, *, name: str, keep_owner: bool = True,
                    owner: tuple[int, int] | None = None) -> None:
    """Unpack a (compressed) tar stream into the plain directory `dest_dir`; nothing lands outside it.

    Entries keep the archive's owners (`keep_owner`) or get `owner` / 0:0; directories the archive
    implies but does not list get `owner` / 0:0."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    writer = LayerWriter(dest_dir, None, owner, None)
    extract_into(stream, writer, "", name=name, keep_owner=keep_owner)
    writer.close()


def extract_into(stream: BinaryIO, writer: LayerWriter, base: str, *, name: str, keep_owner: bool = True) -> None:
    """Unpack a (compressed) tar stream into `writer`'s layer at the directory `base` (resolved).

    Member paths are cleaned as if `base` were `/`, and symlinks (the image's and the archive's
    own) are followed as if chrooted into `base`; hard links must point inside the archive."""
    if not isinstance(stream, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)) and not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)  # type: ignore[type-var]  # a raw binary stream: peek() added
    data = _open_decompressed(stream)
    try:
        with tarfile.open(fileobj=data, mode="r|", bufsize=1 << 20) as tar:  # (its default reads 10 KiB at a time)
            for member in tar:
                _extract_member(tar, member, writer, base, keep_owner)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise BuildError(f"cannot unpack {name}: {exc}") from None


def _segments(m: tarfile.TarInfo) -> list[tuple[int, int]] | None:
    """The data segments of a sparse member, when its map can be followed forwards (else None:
    any other member is read whole)."""
    segments = [(o, n) for o, n in cast("list[tuple[int, int]]", m.sparse or []) if n]  # without end markers
    end = 0
    for offset, length in segments:
        if offset < end or length < 0 or offset + length > m.size:
            return None
        end = offset + length
    return segments if m.sparse else None


def _copy(src: IO[bytes], out: SparseWriter, n: int) -> None:
    while n > 0 and (chunk := src.read(min(n, 1 << 20))):
        out.write(chunk)
        n -= len(chunk)


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, writer: LayerWriter, base: str,
                    keep_owner: bool) -> None:
    parts = split_path(m.name)
    if not parts:
        return
    parent = writer.resolve("/".join([base, *parts[:-1]]), within=base)
    writer.ensure_dir(parent)
    rel = f"{parent}/{parts[-1]}".lstrip("/")
    host = writer.host(rel)
    src_owner = (m.uid, m.gid) if keep_owner else None
    mtime_ns = int(m.mtime * 1_000_000_000)
    if m.isdir():
        writer.clear(host, want_dir=True)
        if not os.path.isdir(host):
            os.mkdir(host)
        writer.finish_entry(host, stat.S_IFDIR | m.mode, mtime_ns, src_owner=src_owner)
        return
    writer.clear(host, want_dir=False)
    if m.isreg():
        fileobj = tar.extractfile(m)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            out = SparseWriter(fd)  # holes stay holes (GNU/PAX sparse entries, runs of zeros)
            raw = getattr(fileobj, "raw", None)  # tarfile's reader of the member (it maps the segments)
            segments = _segments(m)
            if raw is not None and segments is not None:  # only the data segments are read
                for offset, length in segments:
                    raw.seek(offset)  # (the buffered reader over it cannot seek in a stream)
                    out.skip_to(offset)
                    _copy(raw, out, length)
                out.skip_to(m.size)
            elif fileobj is not None:
                _copy(fileobj, out, m.size)
            out.close()
        finally:
            os.close(fd)
        writer.finish_entry(host, stat.S_IFREG | m.mode, mtime_ns, src_owner=src_owner)
    elif m.issym():
        os.symlink(m.linkname, host)
        writer.finish_entry(host, stat.S_IFLNK | 0o777, mtime_ns, is_link=True, src_owner=src_owner)
    elif m.islnk():
        target = writer.resolve("/".join([base, *split_path(m.linkname)]), follow_last=False, within=base)
        target_host = writer.host(target)
        if target == base or not os.path.lexists(target_host) or os.path.isdir(target_host):
            raise BuildError(f"hard link {m.name!r} -> {m.linkname!r} points to no file in the archive")
        os.link(target_host, host, follow_symlinks=False)
        # Docker's untar then chowns, chmods and times the link by its own header: the shared inode takes them
        writer.finish_entry(host, stat.S_IFREG | m.mode, mtime_ns, src_owner=src_owner)
    elif m.ischr() or m.isblk() or m.isfifo():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        try:
            os.mknod(host, kind | m.mode, os.makedev(m.devmajor, m.devminor))
        except PermissionError:
            if os.geteuid() == 0:
                raise
            return
        writer.finish_entry(host, kind | m.mode, mtime_ns, src_owner=src_owner)
