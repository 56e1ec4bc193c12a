"""The one compression sniffer: `sniff` names gzip, zstd, bzip2 and xz by their magic numbers,
`detect` keeps only the layer codecs, `is_tar` recognises an uncompressed ustar/PAX/GNU tar."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile

import pytest
import zstandard

from builder.oci import compress


def _tar(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo("f")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


TAR = _tar(tarfile.PAX_FORMAT)
COMPRESSED = {
    compress.GZIP: gzip.compress(TAR),
    compress.ZSTD: zstandard.ZstdCompressor().compress(TAR),
    compress.BZIP2: bz2.compress(TAR),
    compress.XZ: lzma.compress(TAR),
}


@pytest.mark.parametrize("codec", sorted(COMPRESSED))
def test_sniff_names_every_codec_from_its_first_bytes(codec: str) -> None:
    head = COMPRESSED[codec][:compress.SNIFF_BYTES]
    assert compress.sniff(head) == codec
    assert compress.detect(head) == (codec if codec in (compress.GZIP, compress.ZSTD) else compress.NONE)
    assert not compress.is_tar(COMPRESSED[codec][:compress.TAR_SNIFF_BYTES])


@pytest.mark.parametrize("head", [b"", b"\x1f", b"\x28\xb5\x2f", b"BZ", b"\xfd7zXZ", TAR[:512], b"FROM busybox\n"])
def test_sniff_says_none_for_plain_data_or_too_few_bytes(head: bytes) -> None:
    assert compress.sniff(head) is None
    assert compress.detect(head) == compress.NONE


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_is_tar_recognises_ustar_forms(fmt: int) -> None:
    data = _tar(fmt)
    assert compress.is_tar(data[:compress.TAR_SNIFF_BYTES])
    assert not compress.is_tar(data[:compress.TAR_SNIFF_BYTES - 1])
    assert not compress.is_tar(b"FROM busybox\n" * 40)


def test_detect_reads_what_the_compressors_write() -> None:
    for codec in (compress.GZIP, compress.ZSTD, compress.NONE):
        out: list[bytes] = []
        w = compress.compressor(codec, out.append)
        w.write(TAR)
        w.close()
        blob = b"".join(out)
        assert compress.detect(blob[:4]) == codec
        assert compress.decompressing_reader(io.BytesIO(blob), compress.detect(blob[:4])).read() == TAR
