"""Extraction with writer threads gives the result of applying entries one at a time, in tar order.

Workers are slowed down on purpose (a sleep before each file), so that an entry depending on a
file still being written would run first if the extractor did not wait: without the ordering
logic these tests fail every time, with it they pass whatever the machine's load.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
import time
from pathlib import Path

import pytest

from builder.errors import ImageFormatError
from builder.oci.layer import unpack
from builder.oci.layer.filepool import FilePool
from tests.conftest import requires_root


def _info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mtime: int = 1_000_000, mode: int = 0o644,
          link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mtime, ti.mode, ti.linkname, ti.size = kind, mtime, mode, link, len(data)
    return ti, data


def _tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


F, D, L, S = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE

# each case: entries, in tar order, where a later entry depends on a file queued before it
CASES: dict[str, list[tuple[tarfile.TarInfo, bytes]]] = {
    "hardlink to a file just written": [_info("f", data=b"one"), _info("h", L, link="f")],
    "hardlink into a directory being written": [_info("d", D), _info("d/f", data=b"x"), _info("d/g", data=b"y"),
                                               _info("h", L, link="d/g")],
    "whiteout of a file just written": [_info("d", D), _info("d/f", data=b"gone"), _info("d/keep", data=b"k"),
                                        _info("d/.wh.f")],
    "whiteout of a directory being filled": [_info("d", D), _info("d/f", data=b"x"), _info(".wh.d")],
    "opaque whiteout after its files": [_info("d", D), _info("d/f", data=b"x"), _info("d/.wh..wh..opq"),
                                        _info("d/g", data=b"after")],
    "same file twice, last wins": [_info("f", data=b"first", mode=0o600), _info("f", data=b"second", mode=0o755)],
    "directory replaces a file just written": [_info("f", data=b"x"), _info("f", D), _info("f/g", data=b"g")],
    "file replaces a directory being filled": [_info("d", D), _info("d/x", data=b"x"), _info("d", data=b"file")],
    "symlink replaces a file just written": [_info("f", data=b"x"), _info("f", S, link="target")],
    "file replaces a symlink": [_info("s", S, link="/etc"), _info("s", data=b"plain")],
    "directory mtime after its children": [_info("a", D, mtime=111), _info("a/b", D, mtime=222),
                                           _info("a/b/f", data=b"f"), _info("a/g", data=b"g")],
    "many files in many directories": [e for i in range(40) for e in (
        _info(f"d{i}", D, mtime=1000 + i, mode=0o750), _info(f"d{i}/f", data=b"%d" % i, mode=0o640 + i % 2))],
}


def _listing(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath, n)
            st = p.lstat()
            rel = str(p.relative_to(root))
            first = inodes.setdefault(st.st_ino, rel)
            content = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p) if p.is_symlink() else None
            out[rel] = (st.st_mode, st.st_mtime if not p.is_symlink() else None, content, first)
    return out


@pytest.fixture
def slow_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file written by a worker thread starts 20 ms late."""
    original = unpack._Extractor.write_file

    def slow(self: unpack._Extractor, *args: object) -> None:
        if args[-1]:  # in_worker
            time.sleep(0.02)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(unpack._Extractor, "write_file", slow)


def _extract(data: bytes, dest: Path, overlay: bool = False) -> Path:
    dest.mkdir()
    unpack.extract(io.BytesIO(data), dest, overlay=overlay)
    return dest


@pytest.mark.parametrize("case", list(CASES))
def test_writer_threads_keep_tar_order(case: str, tmp_path: Path, slow_workers: None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _tar(*CASES[case])
    pooled = _listing(_extract(data, tmp_path / "pooled"))
    monkeypatch.setattr(unpack, "_POOLED_MAX", -1)  # every file written by the extracting thread itself
    serial = _listing(_extract(data, tmp_path / "serial"))
    assert pooled == serial


def test_ordering_results(tmp_path: Path, slow_workers: None) -> None:
    """The expected outcome of a few cases, spelled out (not only 'same as serial')."""
    out = _extract(_tar(*CASES["hardlink to a file just written"]), tmp_path / "a")
    assert os.stat(out / "h").st_ino == os.stat(out / "f").st_ino and (out / "h").read_bytes() == b"one"
    out = _extract(_tar(*CASES["whiteout of a file just written"]), tmp_path / "b")
    assert sorted(os.listdir(out / "d")) == ["keep"]
    out = _extract(_tar(*CASES["file replaces a directory being filled"]), tmp_path / "c")
    assert (out / "d").read_bytes() == b"file"
    out = _extract(_tar(*CASES["directory mtime after its children"]), tmp_path / "d")
    assert (os.stat(out / "a").st_mtime, os.stat(out / "a" / "b").st_mtime) == (111, 222)
    out = _extract(_tar(*CASES["same file twice, last wins"]), tmp_path / "e")
    assert (out / "f").read_bytes() == b"second" and os.stat(out / "f").st_mode & 0o777 == 0o755


@requires_root
def test_overlay_whiteout_of_a_file_just_written(tmp_path: Path, slow_workers: None) -> None:
    out = _extract(_tar(*CASES["whiteout of a file just written"]), tmp_path / "o", overlay=True)
    st = os.lstat(out / "d" / "f")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_file_below_a_file_replacing_a_directory_is_refused(tmp_path: Path, slow_workers: None) -> None:
    data = _tar(_info("d", D), _info("d/x", data=b"x"), _info("d", data=b"file"), _info("d/y", data=b"y"))
    with pytest.raises(ImageFormatError, match="not a directory"):
        _extract(data, tmp_path / "out")
    assert (tmp_path / "out" / "d").read_bytes() == b"file"


def test_worker_error_reaches_the_caller_and_stops_the_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = unpack._Extractor.write_file

    def failing(self: unpack._Extractor, parts: list[str], *args: object) -> None:
        if parts[-1] == "bad":
            raise OSError(28, "No space left on device")
        original(self, parts, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(unpack._Extractor, "write_file", failing)
    data = _tar(*[_info(f"f{i}", data=b"x") for i in range(100)], _info("bad", data=b"x"),
                *[_info(f"g{i}", data=b"x") for i in range(100)])
    with pytest.raises(OSError, match="No space left"):
        _extract(data, tmp_path / "out")
    assert not [t for t in threading.enumerate() if t.name == "layer-writer"]  # all joined


def test_pool_busy_covers_the_path_its_ancestors_and_descendants() -> None:
    done: list[tuple[str, ...]] = []
    pool = FilePool(lambda item, in_worker: done.append(item), workers=1)
    assert not pool.busy(("a",))
    pool.add(("a", "b", "f"), 3, ("a", "b", "f"))
    assert pool.busy(("a", "b", "f"))  # the file itself
    assert pool.busy(("a", "b")) and pool.busy(("a",))  # a directory it is in (a removal would race)
    assert pool.busy(("a", "b", "f", "g"))  # below it (the file would have to be a directory)
    assert not pool.busy(("a", "c")) and not pool.busy(("a", "b", "g")) and not pool.busy(("b",))
    pool.drain()
    assert done == [("a", "b", "f")] and not pool.busy(("a", "b", "f"))
    pool.close()


def _default_acl(path: Path, other: int) -> None:
    """Give `path` a default ACL (user::rwx, group::rwx, other::`other`), in the kernel's xattr format."""
    entries = [(0x01, 7), (0x04, 7), (0x20, other)]  # USER_OBJ, GROUP_OBJ, OTHER
    blob = (2).to_bytes(4, "little") + b"".join(
        tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + (0xFFFFFFFF).to_bytes(4, "little")
        for tag, perm in entries)
    os.setxattr(path, "system.posix_acl_default", blob)


def test_modes_are_exact_under_a_default_acl(tmp_path: Path) -> None:
    """open(O_CREAT) ignores the umask but applies a default ACL: the mode must still be the tar's."""
    dest = tmp_path / "dest"
    dest.mkdir()
    _default_acl(dest, other=0)
    data = _tar(_info("f", data=b"x", mode=0o644), _info("d", D, mode=0o755), _info("d/g", data=b"y", mode=0o604))
    unpack.extract(io.BytesIO(data), dest)
    assert [os.stat(dest / p).st_mode & 0o7777 for p in ("f", "d", "d/g")] == [0o644, 0o755, 0o604]


@requires_root
def test_owners_are_exact_under_a_setgid_directory(tmp_path: Path) -> None:
    """New entries in a setgid directory take its group: the tar's group must win."""
    dest = tmp_path / "dest"
    dest.mkdir()
    os.chown(dest, 0, 4321)
    os.chmod(dest, 0o2775)
    data = _tar(_info("f", data=b"x"), _info("d", D), _info("d/g", data=b"y"))
    unpack.extract(io.BytesIO(data), dest)
    for p in ("f", "d", "d/g"):
        st = os.stat(dest / p)
        assert (st.st_uid, st.st_gid) == (0, 0), p
    assert not os.stat(dest / "d").st_mode & stat.S_ISGID
