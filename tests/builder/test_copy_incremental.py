"""An incremental COPY (unchanged files hard-linked from the previous result of the same COPY) makes
exactly the layer a from-scratch COPY makes, and never changes the snapshot it links from."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from builder.build.files.copy import HeredocSource, copy_files
from builder.build.files.reuse import Reuse
from builder.oci.model import chain_ids
from builder.store import Store
from tests.builder.store_helpers import clone_store
from tests.conftest import pybuild, requires_root

pytestmark = requires_root

EPOCH = "1700000000"  # created directories clamp to it; the sources' own mtimes (older) are kept
OLD = 1_600_000_000

DOCKERFILES = {
    "plain": "FROM busybox:latest\nCOPY app /app\n"
             "RUN chmod 600 /app/d1/f001.txt && echo more >> /app/d2/f002.txt && touch /app/d3/f003.txt\n",
    "chown-chmod": "FROM busybox:latest\nCOPY --chown=7:8 --chmod=u=rwX,go=rX app /app\n",
    "into-existing-dir": "FROM busybox:latest\nCOPY app/d1 app/top.txt /etc/\n",
}


def _make_context(root: Path, name: str) -> Path:
    """About 200 files in 4 directories, with varied sizes and modes, a symlink and a hard-link pair."""
    ctx = root / name
    for i in range(200):
        path = ctx / "app" / f"d{i % 4}" / f"f{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i}\n".encode() * (i % 7 + 1))
        os.chmod(path, 0o755 if i % 5 == 0 else 0o644)
        os.utime(path, (OLD + i, OLD + i))
    (ctx / "app" / "top.txt").write_text("top\n")
    (ctx / "app" / "link").symlink_to("d0/f000.txt")
    os.link(ctx / "app" / "d2" / "f002.txt", ctx / "app" / "d2" / "hard")
    (ctx / "Dockerfile").write_text(DOCKERFILES[name])
    return ctx


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One context per Dockerfile, older than the stat cache's one-second racy window."""
    root = tmp_path_factory.mktemp("incremental")
    made = {name: _make_context(root, name) for name in DOCKERFILES}
    time.sleep(max(0.0, 1.1 - (time.time() - max(p.stat().st_ctime for p in root.rglob("*")))))
    return made


def _mutate(ctx: Path, round_: int) -> None:
    """Edits, deletions, additions, mode changes, a file turned into a symlink, and an edit that keeps
    the size and mtime (only the stat cache's ctime can tell)."""
    app = ctx / "app"
    for i in (4 + round_, 9 + round_, 120 + round_):
        path = app / f"d{i % 4}" / f"f{i:03d}.txt"
        path.write_text(f"edited {i} in round {round_}\n")
        os.utime(path, (OLD + 10_000 + i, OLD + 10_000 + i))
    same = app / "d3" / f"f{15 + 4 * round_:03d}.txt"
    st = same.stat()
    same.write_bytes(bytes(b ^ 1 for b in same.read_bytes()))
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns))
    (app / "d1" / f"f{21 + 4 * round_:03d}.txt").unlink()
    (app / f"new{round_}").mkdir()
    (app / f"new{round_}" / "a.txt").write_text("new\n")
    (app / "d0" / f"added{round_}.txt").write_text("added\n")
    os.chmod(app / "d2" / f"f{30 + 4 * round_:03d}.txt", 0o600)
    victim = app / "d0" / f"f{40 + 4 * round_:03d}.txt"
    victim.unlink()
    victim.symlink_to("../top.txt")


def _build(ctx: Path, root: Path) -> list[str]:
    pybuild("build", "-q", "-t", "inc", str(ctx), env={"PYBUILD_ROOT": str(root), "SOURCE_DATE_EPOCH": EPOCH})
    return [str(layer.diff_id) for layer in Store.open(root).image("inc").layers()]


def _copy_snapshot(root: Path, diff_ids: list[str]) -> Path:
    return Store.open(root).snapshot_path(chain_ids(diff_ids[:2])[-1])


def _listing(snapshot: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """path -> (mode, uid, gid, mtime_ns, content sha256 or link target) of every entry."""
    out = {}
    for path in sorted(snapshot.rglob("*")):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
        out[str(path.relative_to(snapshot))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, what)
    return out


def _shared_inodes(a: Path, b: Path) -> int:
    inodes = {p.lstat().st_ino for p in a.rglob("*") if p.is_file() and not p.is_symlink()}
    return sum(1 for p in b.rglob("*") if p.is_file() and not p.is_symlink() and p.lstat().st_ino in inodes)


def _hardlink_entries(root: Path, diff_ids: list[str]) -> list[str]:
    store = Store.open(root)
    layer = store.layer(store.layer_record(diff_ids[1]))
    with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
        return [m.name for m in tar if m.islnk()]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_incremental_copy_makes_the_layer_a_cold_copy_makes(name: str, contexts: dict[str, Path], tmp_path: Path,
                                                            busybox_store: Path, busybox_store_template: Path) -> None:
    ctx = contexts[name]
    first = _build(ctx, busybox_store)
    before = _copy_snapshot(busybox_store, first)
    old_listing = _listing(before)
    rounds = 2 if name == "plain" else 1  # the second round links from a snapshot that is itself linked
    for round_ in range(rounds):
        _mutate(ctx, round_)
        previous = _copy_snapshot(busybox_store, first)
        again = _build(ctx, busybox_store)
        cold = _build(ctx, clone_store(busybox_store_template, tmp_path / f"cold{round_}"))
        assert again == cold, "an incremental COPY must give the diff_ids of a build in a fresh store"
        assert again[1] != first[1]
        # the unchanged files were linked, not copied: all but the 8 a round touches and (in the second
        # round, when it comes within a second) the 7 the first one touched, still too fresh for the
        # stat cache (racily clean), so their digests are unknown and they are copied again
        now = _copy_snapshot(busybox_store, again)
        files = sum(1 for p in now.rglob("*") if p.is_file() and not p.is_symlink())
        assert files - 16 <= _shared_inodes(previous, now) < files
        first = again
    assert _listing(before) == old_listing, "the earlier snapshot must not change"
    if name != "into-existing-dir":
        assert _hardlink_entries(busybox_store, first) == ["app/d2/hard"]


def _reuse_case(tmp_path: Path, change: str) -> tuple[Path, Path]:
    """Copy a 2-file tree once (recording the result), change one thing, copy again with Reuse."""
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a", "b"):
        (src / n).write_text(n * 10)
        os.utime(src / n, (OLD, OLD))
    digests = {n: hashlib.sha256((src / n).read_bytes()).digest() for n in ("a", "b")}

    def digest_of(host: str, st: os.stat_result) -> bytes | None:
        return digests.get(os.path.basename(host))

    first = tmp_path / "first"
    first.mkdir()
    reuse = Reuse(None, {}, lambda host, st: None)  # recorded: the digests of the bytes written
    copy_files(first, ["a", "b"], "/d/", src=src, reuse=reuse)
    prev = dict(reuse.written)
    assert {k: v[0] for k, v in prev.items()} == {"d/a": hashlib.sha256(b"a" * 10).digest(),
                                                 "d/b": hashlib.sha256(b"b" * 10).digest()}
    if change == "content":
        digests["a"] = hashlib.sha256(b"other").digest()
    elif change == "old inode":
        prev["d/a"] = (prev["d/a"][0], prev["d/a"][1] + 1)
    elif change == "old mode":
        os.chmod(first / "d" / "a", 0o600)
    elif change == "mtime":
        os.utime(src / "a", (OLD + 1, OLD + 1))
    elif change == "xattr":
        os.setxattr(src / "a", "user.note", b"x")
    second = tmp_path / "second"
    second.mkdir()
    copy_files(second, ["a", "b"], "/d/", src=src, reuse=Reuse(str(first), prev, digest_of),
                       chmod="640" if change == "chmod" else None, owner=(5, 5) if change == "chown" else None)
    return first, second


@pytest.mark.parametrize("change", ["none", "content", "old inode", "old mode", "mtime", "xattr", "chmod", "chown"])
def test_reuse_links_only_identical_files(tmp_path: Path, change: str) -> None:
    first, second = _reuse_case(tmp_path, change)
    same_a = (first / "d" / "a").stat().st_ino == (second / "d" / "a").stat().st_ino
    same_b = (first / "d" / "b").stat().st_ino == (second / "d" / "b").stat().st_ino
    assert same_a == (change == "none")
    assert same_b == (change not in ("chmod", "chown"))


@pytest.mark.parametrize("items, kept", [
    (["one", "two"], {"d/x/y"}),  # a directory replaces the file d/x
    (["two", "one"], {"d/x"}),  # a file replaces the directory d/x and what was in it
    (["one", HeredocSource("x", b"heredoc\n")], set()),  # a heredoc replaces d/x
    (["one", "three"], set()),  # a symlink replaces d/x
])
def test_written_names_only_files_still_in_the_layer(tmp_path: Path, items: list, kept: set[str]) -> None:
    src = tmp_path / "src"
    for rel in ("one/x", "two/x/y"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    (src / "three").mkdir()
    (src / "three" / "x").symlink_to("elsewhere")
    layer = tmp_path / "layer"
    layer.mkdir()
    reuse = Reuse(None, {}, lambda host, st: None)
    copy_files(layer, items, "/d/", src=src, reuse=reuse)
    assert set(reuse.written) == kept
    for rel, (digest, ino) in reuse.written.items():
        assert (layer / rel).lstat().st_ino == ino
        assert hashlib.sha256((layer / rel).read_bytes()).digest() == digest


@pytest.mark.parametrize("racing", [False, True])
def test_a_known_digest_is_recorded_only_for_the_bytes_it_names(tmp_path: Path, racing: bool) -> None:
    """The stat cache's digest is taken for a copied file unless the source changed while it was copied."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("old")

    def digest_of(host: str, st: os.stat_result) -> bytes | None:
        if racing:
            Path(host).write_text("changed while the copy ran")  # after the stat the copy took
        return hashlib.sha256(b"old").digest()

    layer = tmp_path / "layer"
    layer.mkdir()
    reuse = Reuse(None, {}, digest_of)
    copy_files(layer, ["a"], "/d/", src=src, reuse=reuse)
    if racing:
        assert reuse.written == {}
    else:
        assert reuse.written == {"d/a": (hashlib.sha256(b"old").digest(), (layer / "d" / "a").lstat().st_ino)}
