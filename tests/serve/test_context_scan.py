"""The context tar checked and hashed as it arrives (`builder.serve.context.TarScanner`), on tars
written by Python's tarfile in every format the docker CLI and others produce, in chunks of any
size; and the stat cache primed from it, so a build reads no context file to checksum it."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from builder.serve.api import ApiError
from builder.serve.context import TarScanner, prime_statcache

LONG = "deep/" + "/".join(["a-rather-long-directory-name"] * 6) + "/file-with-a-long-name.txt"


def _tar(members: list[tuple[str, bytes | None, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """(name, type, data or link target) -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind or tarfile.REGTYPE
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data.decode()
                tar.addfile(info)
            elif info.type == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _scan(body: bytes, chunk: int = 1 << 20) -> TarScanner:
    s = TarScanner()
    for i in range(0, len(body), chunk):
        s.feed(body[i:i + chunk])
    s.finish()
    return s


TREE = [("Dockerfile", None, b"FROM scratch\n"), ("./src/", tarfile.DIRTYPE, b""), ("src/a.bin", None, bytes(range(256)) * 40),
        ("src/empty", None, b""), (LONG, None, b"long\n"), ("link", tarfile.SYMTYPE, b"src/a.bin"),
        ("hard", tarfile.LNKTYPE, b"src/a.bin")]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 513, 4096, 1 << 20])
def test_digests_of_every_format_in_any_chunks(fmt: int, chunk: int) -> None:
    tree = TREE if fmt != tarfile.USTAR_FORMAT else [m for m in TREE if m[0] != LONG]
    s = _scan(_tar(tree, fmt), chunk)
    want = {name.lstrip("./"): hashlib.sha256(data).digest() for name, kind, data in tree if kind is None}
    assert s.digests == want
    assert s.sizes["src/a.bin"] == 10240


def test_compressed_and_cut_contexts() -> None:
    body = _tar(TREE)
    assert _scan(gzip.compress(body), 1000).digests == _scan(body).digests
    end = body.index(b"FROM scratch\n") + len(b"FROM scratch\n")
    _scan(body[:end])  # cut right after a member's data (docker build -f-): accepted
    with pytest.raises(ApiError, match="ends inside member 'Dockerfile'"):
        _scan(body[:end - 3])
    with pytest.raises(ApiError, match="compressed stream is cut short"):
        _scan(gzip.compress(body)[:-20])
    with pytest.raises(ApiError, match="zstd"):
        _scan(b"\x28\xb5\x2f\xfd" + bytes(600))
    with pytest.raises(ApiError, match="empty"):
        _scan(b"")


@pytest.mark.parametrize("members, words", [
    ([("../x", None, b"x")], "points outside the context"),
    ([("/etc/x", None, b"x")], "points outside the context"),
    ([("h", tarfile.LNKTYPE, b"../../etc/passwd")], "points outside the context"),
    ([("l", tarfile.SYMTYPE, b"/etc"), ("l/passwd", None, b"x")], "lies below a symbolic link"),
    ([("d", tarfile.CHRTYPE, b"")], "is a device or a FIFO"),
    ([("f", tarfile.FIFOTYPE, b"")], "is a device or a FIFO"),
])
def test_refused_members(members: list[tuple[str, bytes | None, bytes]], words: str) -> None:
    with pytest.raises(ApiError, match=words) as err:
        _scan(_tar([("Dockerfile", None, b"FROM scratch\n"), *members]))
    assert err.value.status == 400


def test_bad_checksum_and_garbage() -> None:
    body = bytearray(_tar(TREE, tarfile.GNU_FORMAT))
    body[10] ^= 1  # inside the first header's name
    with pytest.raises(ApiError, match="bad header checksum"):
        _scan(bytes(body))
    with pytest.raises(ApiError, match="bad header checksum"):
        _scan(b"this is not a tar at all" * 40)


def _unpacked_and_primed(body: bytes, ctx: Path, files: int) -> Path:
    """The context tar `body` scanned, unpacked into `ctx` and its digests primed (`files` of them)."""
    scanner = _scan(body)
    ctx.mkdir()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(ctx, filter="tar")
    assert prime_statcache(ctx, scanner.digests, scanner.sizes) == files
    return ctx


def test_primed_stat_cache_spares_the_build_reading_the_files(store_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import builder.build.context as context_mod
    from builder.build.context import BuildContext

    ctx = _unpacked_and_primed(_tar(TREE), tmp_path / "ctx", 4)
    read: list[str] = []
    real = context_mod._hash_file
    monkeypatch.setattr(context_mod, "_hash_file", lambda p: read.append(p) or real(p))
    primed = BuildContext(ctx, b"", "Dockerfile").checksum([""])
    assert read == [str(ctx / "hard")]  # a hard link's content is not taken from the tar
    (ctx / "src" / "a.bin").write_bytes(b"changed")  # a changed file is read again, whatever was primed
    assert BuildContext(ctx, b"", "Dockerfile").checksum([""]) != primed


def test_a_frozen_contexts_stat_cache_ignores_the_ctime_links_change(store_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """COPY hard-links a frozen context's files into its layer, which changes their ctime: the
    rebuild of a frozen context still takes every digest from the stat cache; an ordinary one reads
    the linked file again."""
    import os

    import builder.build.context as context_mod
    from builder.build.context import BuildContext

    ctx = _unpacked_and_primed(_tar([("src/a.bin", None, b"a" * 5000), ("src/b.bin", None, b"b" * 5000)]),
                               tmp_path / "ctx", 2)
    os.link(ctx / "src" / "a.bin", tmp_path / "linked")  # what COPY does with a frozen context
    read: list[str] = []
    real = context_mod._hash_file
    monkeypatch.setattr(context_mod, "_hash_file", lambda p: read.append(p) or real(p))
    frozen = BuildContext(ctx, b"", "Dockerfile", frozen=True).checksum(["src"])
    assert read == []
    assert BuildContext(ctx, b"", "Dockerfile").checksum(["src"]) == frozen
    assert read == [str(ctx / "src" / "a.bin")]


FROZEN = """
import json, os, sys
from builder.build import BuildOptions, build
from builder.store import Store
out = {}
for frozen in (True, False):  # the first keeps its directory as the layer's snapshot
    r = build(BuildOptions(sys.argv[1], tags=(f"frozen:{frozen}",), no_cache=True, frozen_context=frozen))
    image = Store.open().resolve(f"frozen:{frozen}")
    top = Store.open().rootfs_dirs(image)[-1]
    out[str(frozen)] = {"layers": [str(l.diff_id) for l in image.layers()],
                        "ino": os.stat(os.path.join(top, "a.bin")).st_ino}
print(json.dumps(out))
"""


def test_a_frozen_context_is_linked_into_the_layer_byte_for_byte(store_root: Path, tmp_path: Path) -> None:
    """COPY from a context nobody changes (serve's unpacked copy) hard-links its files: the same
    layer as a copy, without writing the bytes again."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # files only: a directory COPY makes gets the build's time, which two builds need not share
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.bin run.sh /\n")
    (ctx / "a.bin").write_bytes(os.urandom(100_000))
    (ctx / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "run.sh", 0o755)
    env = {**os.environ, "PYBUILD_ROOT": str(store_root), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", FROZEN, str(ctx)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["False"]["layers"] == got["True"]["layers"]  # the same layer tar, to the byte
    source = os.stat(ctx / "a.bin")
    if os.stat(store_root).st_dev == source.st_dev:  # links need one filesystem
        assert got["True"]["ino"] == source.st_ino and source.st_nlink == 2


def test_each_upload_dir_starts_in_a_quiet_block_group(tmp_path: Path) -> None:
    """Contexts are unpacked under a directory with ext4's top-directory hint (util/spread.py)."""
    import subprocess

    from builder.serve.listen import upload_dir

    if subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout.strip() \
            not in ("ext2/ext3", "ext4"):
        pytest.skip("the hint is an ext2/3/4 directory flag")
    work = upload_dir(tmp_path)
    attrs = subprocess.run(["lsattr", "-d", str(work.parent), str(work)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "T" in attrs[0] and "T" not in attrs[2]
