"""Layer tars: hostile input is refused or neutralised, never followed; output is deterministic."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

import pytest

from builder.errors import ImageFormatError
from builder.oci import compress
from builder.oci.layer import unpack
from builder.oci.layer.encode import TarWriter
from builder.oci.layer.entry import BLK, CHR, DIR, FIFO, LNK, REG, SYM, Header
from builder.oci.layer.write import rewrite_tar
from builder.store import Store
from tests.conftest import requires_root, requires_tool

Entry = tuple  # (name, type, extra) for _tar


def _tar(*entries: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            info, data = e if isinstance(e, tuple) else (e, b"")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _file(name: str, data: bytes = b"data", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti


def _dir(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
    return ti


def _listing(root: Path, skip: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p == skip:
                continue
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                           p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(dest, outside): outside/secret is what an escape would touch."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    (tmp_path / "dest").mkdir()
    return tmp_path / "dest", tmp_path / "outside"


def _gzip_bomb() -> bytes:
    """A gzip of a tar holding 64 MiB of zeros (about 64 KiB compressed)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        gz.write(info.tobuf(tarfile.PAX_FORMAT))
        block = b"\0" * (1 << 20)
        for _ in range(64):
            gz.write(block)
        gz.write(b"\0" * 1024)
    return out.getvalue()


# name -> (layers (each tar bytes), expected: an error substring, or a check of dest)
HOSTILE: dict[str, tuple[Callable[[Path], list[bytes]], str | Callable[[Path], bool]]] = {
    "dotdot traversal": (lambda o: [_tar(_file("../outside/secret", b"pwned"))], "outside the root"),
    "nested dotdot": (lambda o: [_tar(_file("a/../../outside/secret", b"pwned"))], "outside the root"),
    "absolute path is made relative": (lambda o: [_tar(_file(f"{o}/secret", b"inside"))],
                                       lambda d: (d / str(d.parent / "outside")[1:] / "secret").read_bytes() == b"inside"),
    "symlink then write through": (lambda o: [_tar(_link("esc", str(o)), _file("esc/secret", b"pwned"))],
                                   "symlink; refusing to write through it"),
    "relative symlink then write through": (lambda o: [_tar(_link("esc", "../outside"), _file("esc/new", b"x"))],
                                            "refusing to write through"),
    "symlink in a lower layer then write through": (
        lambda o: [_tar(_link("lib", str(o))), _tar(_file("lib/secret", b"pwned"))], "refusing to write through"),
    "file replaces a planted symlink, not its target": (
        lambda o: [_tar(_link("x", f"{o}/secret")), _tar(_file("x", b"mine"))],
        lambda d: not (d / "x").is_symlink() and (d / "x").read_bytes() == b"mine"),
    "hardlink to outside": (lambda o: [_tar(_link("hl", "../outside/secret", tarfile.LNKTYPE))], "outside the root"),
    "hardlink to absolute host file": (lambda o: [_tar(_link("hl", f"{o}/secret", tarfile.LNKTYPE))],
                                       "does not exist"),
    "hardlink through a symlink": (
        lambda o: [_tar(_link("sl", str(o)), _link("hl", "sl/secret", tarfile.LNKTYPE))], "refusing to write through"),
    "hardlink to a directory": (lambda o: [_tar(_dir("d"), _link("hl", "d", tarfile.LNKTYPE))], "directory"),
    "whiteout of dotdot": (lambda o: [_tar(_file("a/.wh..."))], "whiteout of '..'"),
    "whiteout of dotdot at root": (lambda o: [_tar(_file(".wh..."))], "whiteout of '..'"),
    "file replaces a directory": (lambda o: [_tar(_dir("d"), _file("d/x"), _file("d", b"now a file"))],
                                  lambda d: (d / "d").read_bytes() == b"now a file"),
    "directory replaces a file": (lambda o: [_tar(_file("f"), _dir("f"), _file("f/y", b"y"))],
                                  lambda d: (d / "f" / "y").read_bytes() == b"y"),
    "10000-level deep path": (lambda o: [_tar(_file("a/" * 10000 + "f"))], "longer than 4096 bytes"),
    "0-byte tar": (lambda o: [b""], "empty"),
    "truncated tar": (lambda o: [_tar(_file("big", b"x" * 100000))[:5000]], "truncated"),
    "garbage": (lambda o: [b"this is not a tar archive" * 40], "bad header checksum"),
    "root becomes a symlink": (lambda o: [_tar(_link(".", str(o)))], "type of the root directory"),
    "gzip bomb over the size limit": (lambda o: [_gzip_bomb()], "larger than the limit"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_tar(case: str, sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    make, expected = HOSTILE[case]
    before = _listing(dest.parent, dest)
    error = None
    try:
        for layer in make(outside):
            codec = compress.detect(layer[:4])
            reader = compress.decompressing_reader(io.BytesIO(layer), codec, limit=8 << 20)
            unpack.extract(reader, dest, overlay=False)
    except ImageFormatError as exc:
        error = str(exc)
    assert _listing(dest.parent, dest) == before, "something outside the target changed"
    if isinstance(expected, str):
        assert error is not None and expected in error, error
    else:
        assert error is None, error
        assert expected(dest)


def test_overlay_xattrs_in_a_tar_are_dropped(tmp_path: Path) -> None:
    ti, data = _file("f")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.keep": "v"}
    unpack.extract(io.BytesIO(_tar((ti, data))), tmp_path, overlay=False)
    names = os.listxattr(tmp_path / "f")
    assert "trusted.overlay.opaque" not in names and "user.keep" in names


def _upper(root: Path) -> Path:
    """An overlay-style upperdir with every kind of entry commit_dir handles."""
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"content\n")
    if os.geteuid() == 0:
        os.chown(root / "d" / "f", 1000, 100000)  # before chmod and setcap: chown clears both
    os.chmod(root / "d" / "f", 0o4755)
    os.link(root / "d" / "f", root / "d" / "hard")
    os.symlink("f", root / "d" / "sym")
    (root / ("n" * 200)).write_text("long name")
    os.setxattr(root / "d" / "f", "user.comment", b"\xffbinary\x00")
    if os.geteuid() == 0:
        os.setxattr(root / "d" / "f", "security.capability",
                    bytes.fromhex("0100000200300000000000000000000000000000"))
        os.mknod(root / "gone", stat.S_IFCHR | 0o600, 0)
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.setxattr(root / "d" / "sub", "trusted.overlay.opaque", b"y")
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "sock", stat.S_IFSOCK | 0o755)
    return root


def test_commit_dir_is_reproducible_across_stores_and_mtimes(tmp_path: Path) -> None:
    upper = _upper(tmp_path / "upper")
    a = Store.open(tmp_path / "a").commit_dir(upper, epoch=1000)
    os.utime(upper / "d" / "f", (5000, 5000))  # later than the epoch: clamped, same layer
    b = Store.open(tmp_path / "b").commit_dir(upper, epoch=1000)
    assert a == b
    c = Store.open(tmp_path / "c").commit_dir(upper, compression="zstd", epoch=1000)
    assert c.diff_id == a.diff_id and c.digest != a.digest


def test_commit_dir_tar_contents(tmp_path: Path) -> None:
    upper = _upper(tmp_path / "upper")
    warnings: list[str] = []
    store = Store.open(tmp_path / "s")
    rec = store.commit_dir(upper, warn=warnings.append)
    assert warnings == ["skipping socket /sock: not stored in layers"]  # tar has no socket type
    with tarfile.open(store.blob_path(rec.digest)) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["d/hard"].islnk() and members["d/hard"].linkname == "d/f"
    assert members["d/sym"].issym() and members["d/sym"].linkname == "f"
    assert members["d/f"].mode == 0o4755 and "sock" not in members and "n" * 200 in members
    assert members["fifo"].isfifo() and members["fifo"].mode == 0o640  # kept, as Docker's layers keep them
    if os.geteuid() == 0:
        assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (1, 3)
    assert members["d/f"].pax_headers["SCHILY.xattr.user.comment"].encode("utf-8", "surrogateescape") == \
        b"\xffbinary\x00"
    if os.geteuid() == 0:
        assert ".wh.gone" in members and "d/sub/.wh..wh..opq" in members
        assert (members["d/f"].uid, members["d/f"].gid) == (1000, 100000)
        assert "SCHILY.xattr.security.capability" in members["d/f"].pax_headers
        assert not any("overlay" in k for m in members.values() for k in m.pax_headers)
    assert all(m.uname == "" and m.mtime > 0 for m in members.values())


def test_tar_bytes_are_those_layer_digests_were_made_with() -> None:
    """The encoder's bytes, pinned: ustar, PAX only when needed (long names and links, big ids and
    times, xattrs), devices, a file that shrank; and rewrite_tar's canonical copy. A change here
    changes every layer's digest (these sums are those of the encoder before the layer/ split)."""
    entries = [
        (Header("etc", DIR, 0o755, mtime=1700000000), b""),
        (Header("etc/passwd", REG, 0o644, 0, 0, 5, 1700000000), b"root\n"),
        (Header("etc/link", LNK, 0o644, linkname="etc/passwd"), b""),
        (Header("etc/sym", SYM, 0o777, linkname="../" + "t" * 150), b""),
        (Header("d/" + "n" * 120 + "/" + "m" * 90, REG, 0o600, size=3), b"abc"),
        (Header("x" * 300, REG, 0o4755, 3000000, 2097152, 0, 8 ** 11 + 5), b""),
        (Header("dev/null", CHR, 0o666, devmajor=1, devminor=3), b""),
        (Header("dev/sda", BLK, 0o660, 0, 6, devmajor=8, devminor=0), b""),
        (Header("fifo", FIFO, 0o644, mtime=-5), b""),
        (Header("x", REG, 0o644, size=2, xattrs=(("security.capability", b"\x01\x00"), ("user.a", "é".encode()))),
         b"hi"),
        (Header("shrunk", REG, 0o644, size=10), b"only4"),
    ]
    buf = bytearray()
    writer = TarWriter(buf.extend)
    for h, data in entries:
        writer.add(h, io.BytesIO(data).read)
    writer.close()
    assert len(buf) == 11776
    assert hashlib.sha256(buf).hexdigest() == "b9d916f7b7dde3ed3df98bd25e70f9b837937f1c8196f933d8c7991e27bfc593"
    out = bytearray()
    rewrite_tar(io.BytesIO(bytes(buf)), out.extend, epoch=1600000000)
    assert hashlib.sha256(out).hexdigest() == "01dec73b9d9d7f20667bec2d364abf4271015e8a98abf35d0aefe42ec0daf22b"


def test_add_data_writes_what_add_writes() -> None:
    """`TarWriter.add_data` (write_dir's path for small files already read) gives `add`'s bytes,
    a file that shrank included."""
    entries = [(Header("etc/passwd", REG, 0o644, 0, 0, 5, 1700000000), b"root\n"),
               (Header("d/" + "n" * 120 + "/" + "m" * 90, REG, 0o600, size=3), b"abc"),
               (Header("x", REG, 0o644, size=2, xattrs=(("user.a", b"1"),)), b"hi"),
               (Header("empty", REG, 0o644), b""), (Header("shrunk", REG, 0o644, size=10), b"only4")]
    bufs = []
    for small in (False, True):
        buf = bytearray()
        writer = TarWriter(buf.extend)
        for h, data in entries:
            writer.add_data(h, data) if small else writer.add(h, io.BytesIO(data).read)
        writer.close()
        bufs.append(bytes(buf))
    assert bufs[0] == bufs[1]


def test_write_dir_orders_names_by_their_bytes(tmp_path: Path) -> None:
    """Entries in byte order of their names, ASCII or not (write_dir sorts ASCII-only directories
    by the str)."""
    from builder.oci.layer.write import write_dir

    names = [b"b", b"a", b"Z", b"aa", b"_", "\u00e9".encode(), b"\xff", b"a-b", b"a.b"]
    for d in (tmp_path / "plain", tmp_path / "mixed"):
        d.mkdir()
        for n in (names[:5] if d.name == "plain" else names):
            (Path(os.fsdecode(bytes(d) + b"/" + n))).write_bytes(n)
    buf = bytearray()
    write_dir(tmp_path, buf.extend)
    with tarfile.open(fileobj=io.BytesIO(bytes(buf)), encoding="utf-8", errors="surrogateescape") as tf:
        got = [os.fsencode(m.name) for m in tf.getmembers()]
    want = [b"mixed", b"plain"] + [b"mixed/" + n for n in sorted(names)] + [b"plain/" + n for n in sorted(names[:5])]
    assert got == want


@requires_root
def test_overlay_round_trip_upper_to_layer_to_snapshot(tmp_path: Path) -> None:
    upper = _upper(tmp_path / "upper")
    os.utime(upper / "gone", (1_000_000, 1_000_000), follow_symlinks=False)  # not "now": must survive
    store = Store.open(tmp_path / "s")
    rec = store.commit_dir(upper)
    snap = store.snapshot([rec.diff_id])
    st = os.lstat(snap / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and st.st_mtime == 1_000_000
    assert os.getxattr(snap / "d" / "sub", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(snap / "d" / "f", "security.capability") == \
        bytes.fromhex("0100000200300000000000000000000000000000")
    assert os.stat(snap / "d" / "f").st_mode & 0o7777 == 0o4755
    assert os.stat(snap / "d" / "f").st_ino == os.stat(snap / "d" / "hard").st_ino
    again = store.commit_dir(snap)  # a snapshot committed again is the same layer
    assert again.diff_id == rec.diff_id


@requires_tool("tar")
def test_reads_gnu_tar_output(tmp_path: Path) -> None:
    src = tmp_path / "src"
    deep = src / ("x" * 90) / ("y" * 90) / ("z" * 90)
    deep.mkdir(parents=True)
    (deep / "file").write_text("deep")
    os.symlink("l" * 150, src / "longlink")
    for fmt in ("gnu", "posix"):
        tar = tmp_path / f"{fmt}.tar"
        subprocess.run(["tar", f"--format={fmt}", "-C", str(src), "-cf", str(tar), "."], check=True,
                       capture_output=True)
        out = tmp_path / f"out-{fmt}"
        out.mkdir()
        with open(tar, "rb") as f:
            unpack.extract(f, out)
        assert (out / ("x" * 90) / ("y" * 90) / ("z" * 90) / "file").read_text() == "deep"
        assert os.readlink(out / "longlink") == "l" * 150


@pytest.mark.parametrize("codec", [compress.GZIP, compress.ZSTD, compress.NONE])
def test_codecs_are_readable_by_the_real_tools(codec: str, tmp_path: Path) -> None:
    data = os.urandom(1 << 20) + b"text " * 600000
    chunks: list[bytes] = []
    w = compress.compressor(codec, chunks.append)
    for i in range(0, len(data), 100000):
        w.write(data[i:i + 100000])
    w.close()
    blob = b"".join(chunks)
    tool = {compress.GZIP: ["gzip", "-dc"], compress.ZSTD: ["zstd", "-dc"], compress.NONE: ["cat"]}[codec]
    assert subprocess.run(tool, input=blob, capture_output=True, check=True).stdout == data
    assert compress.decompressing_reader(io.BytesIO(blob), codec).read() == data


def _compressed(codec: str, data: bytes, threads: int, piece: int) -> bytes:
    chunks: list[bytes] = []
    w = compress.compressor(codec, chunks.append, threads=threads)
    for i in range(0, len(data), piece):
        w.write(data[i:i + piece])
    w.close()
    return b"".join(chunks)


def test_zstd_output_does_not_depend_on_threads_or_write_sizes() -> None:
    data = b"".join(os.urandom(64) * 300 for _ in range(400))  # ~7.7 MB: several 2 MiB jobs
    outs = {_compressed(compress.ZSTD, data, threads, piece) for threads, piece in ((1, 1 << 20), (2, 7777), (4, 3 << 20))}
    assert len(outs) == 1


def test_parallel_gzip_is_deterministic_and_one_member(tmp_path: Path) -> None:
    data = b"".join(os.urandom(64) * 300 for _ in range(200))
    outs = [_compressed(compress.GZIP, data, threads, piece) for threads, piece in ((1, 1 << 20), (2, 7777), (4, 3 << 20))]
    assert outs[0] == outs[1] == outs[2]
    assert outs[0][:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0
    d = __import__("zlib").decompressobj(31)
    assert d.decompress(outs[0]) == data and d.eof and d.unused_data == b""
