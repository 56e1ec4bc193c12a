"""The build context: opening it, resolving COPY sources inside it, and checksumming them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from builder.build import context as context_mod
from builder.build.context import checksum_sources, expand_sources, open_context
from builder.cache import stat as statcache_mod
from builder.cache.stat import StatCache
from builder.errors import BuildError, ContextError
from builder.build.fsview import RootView
from tests.builder.context_helpers import make_tree


@pytest.fixture
def ctx_dir(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM scratch\n",
        "a.txt": "a", "b.txt": "b", "c.md": "c",
        "src/main.py": "print()", "src/util/x.py": "x", "src/util/y.txt": "y",
        "empty/": None,
        "link-in": "-> src/main.py",
        "link-dir": "-> src",
        "link-abs": "-> /src/util/x.py",
        "link-out": "-> ../../../etc/passwd",
        "link-abs-out": "-> /etc/passwd",
        "arr[0].txt": "arr",
    })


# -- opening ------------------------------------------------------------------------------------

def test_directory_context_reads_dockerfile_and_ignore(ctx_dir: Path) -> None:
    (ctx_dir / ".dockerignore").write_text("*.md\n")
    ctx = open_context(str(ctx_dir))
    assert ctx.root == ctx_dir and ctx.dockerfile == b"FROM scratch\n"
    assert ctx.ignore.patterns == ["*.md"] and ctx.ignore_file == ctx_dir / ".dockerignore"


def test_dockerfile_flag_is_relative_to_cwd_and_picks_its_ignore_file(ctx_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (ctx_dir / ".dockerignore").write_text("*.md\n")
    other = make_tree(tmp_path / "elsewhere", {"x.Dockerfile": "FROM busybox\n",
                                               "x.Dockerfile.dockerignore": "src\n"})
    monkeypatch.chdir(tmp_path)
    ctx = open_context(str(ctx_dir), dockerfile="elsewhere/x.Dockerfile")
    assert ctx.dockerfile == b"FROM busybox\n" and ctx.ignore.patterns == ["src"]
    assert ctx.ignore_file == other / "x.Dockerfile.dockerignore"


def test_missing_context_and_dockerfile_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match='path ".*nope" not found'):
        open_context(str(tmp_path / "nope"))
    with pytest.raises(ContextError, match="cannot read Dockerfile Dockerfile: no such file"):
        open_context(str(tmp_path))


def test_dockerfile_on_stdin_has_no_context() -> None:
    ctx = open_context("-", stdin=io.BytesIO(b"FROM scratch\nCOPY a /a\n"))
    assert ctx.root is None and ctx.dockerfile.startswith(b"FROM scratch")
    with pytest.raises(ContextError, match="Dockerfile came from stdin without a context"):
        ctx.resolve_sources(["a"])


def test_dockerfile_on_stdin_with_a_directory_context(ctx_dir: Path) -> None:
    ctx = open_context(str(ctx_dir), dockerfile="-", stdin=io.BytesIO(b"FROM x\n"))
    assert ctx.dockerfile == b"FROM x\n" and ctx.resolve_sources(["a.txt"]) == ["a.txt"]


@pytest.mark.parametrize("compress", ["", "gz", "bz2", "xz", "zst"])
def test_tarball_on_stdin_is_the_context(ctx_dir: Path, tmp_path: Path, compress: str, store_root: Path) -> None:
    tar = tmp_path / "ctx.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(ctx_dir), "."], check=True)
    if compress:
        tool = {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd"}[compress]
        subprocess.run([tool, "-q", "-f", str(tar)], check=True)
        tar = tar.with_name(f"ctx.tar.{compress}")
    scratch = tmp_path / "scratch"
    with open(tar, "rb") as f:
        ctx = open_context("-", stdin=f, scratch_dir=scratch)  # type: ignore[arg-type]
    assert ctx.root == scratch and ctx.dockerfile == b"FROM scratch\n" and ctx.scratch
    assert ctx.resolve_sources(["src/*.py"]) == ["src/main.py"]
    assert (scratch / "link-out").is_symlink()
    assert ctx.checksum(["src"]) == open_context(str(ctx_dir)).checksum(["src"])  # same content, same key
    assert not (store_root / "cache" / "statcache").exists() or len(list((store_root / "cache/statcache").iterdir())) <= 1


def test_tarball_on_stdin_is_taken_as_it_is_without_dockerignore(ctx_dir: Path, tmp_path: Path) -> None:
    """BuildKit and docker's legacy builder apply .dockerignore to a local directory only."""
    (ctx_dir / ".dockerignore").write_text("*.md\nsrc\n")
    (ctx_dir / "Dockerfile.dockerignore").write_text("a.txt\n")
    tar = tmp_path / "ctx.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(ctx_dir), "."], check=True)
    with open(tar, "rb") as f:
        ctx = open_context("-", stdin=f, scratch_dir=tmp_path / "scratch")  # type: ignore[arg-type]
    assert ctx.ignore.patterns == [] and ctx.ignore_file is None
    assert ctx.resolve_sources(["*.md", "src/util/*", "a.txt"]) == ["c.md", "src/util/x.py", "src/util/y.txt", "a.txt"]


def test_hostile_tarball_on_stdin_stays_in_scratch(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, link in [("Dockerfile", tarfile.REGTYPE, ""), ("../evil", tarfile.REGTYPE, ""),
                                 ("up", tarfile.SYMTYPE, "/"), ("up/tmp/evil2", tarfile.REGTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            data = b"FROM scratch\n" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    scratch = tmp_path / "scratch"
    open_context("-", stdin=buf, scratch_dir=scratch)
    assert not (tmp_path / "evil").exists() and (scratch / "evil").is_file()
    assert (scratch / "tmp" / "evil2").is_file()  # `up` -> `/` resolved inside the scratch dir


# -- resolving sources -------------------------------------------------------------------------

RESOLVE_TABLE: list[tuple[list[str], list[str]]] = [
    (["a.txt"], ["a.txt"]),
    (["./a.txt"], ["a.txt"]),
    (["/a.txt"], ["a.txt"]),                        # absolute paths are context-relative
    (["../../a.txt"], ["a.txt"]),                   # `..` cannot climb out
    (["src/../b.txt"], ["b.txt"]),
    (["."], [""]),
    (["*.txt"], ["a.txt", "arr[0].txt", "b.txt"]),
    (["?.txt", "c.md"], ["a.txt", "b.txt", "c.md"]),
    (["src/*/*.py"], ["src/util/x.py"]),
    (["link-dir/*.py"], ["link-dir/main.py"]),      # wildcards below a symlinked directory
    (["arr\\[0\\].txt"], ["arr[0].txt"]),           # escaped brackets are literal
    (["[ab].txt"], ["a.txt", "b.txt"]),
    (["link-in"], ["link-in"]),
    (["link-abs"], ["link-abs"]),                   # `/src/util/x.py` inside the context
    (["empty"], ["empty"]),
]


@pytest.mark.parametrize(("sources", "expected"), RESOLVE_TABLE, ids=[" ".join(s) for s, _ in RESOLVE_TABLE])
def test_resolve_sources(ctx_dir: Path, sources: list[str], expected: list[str]) -> None:
    assert open_context(str(ctx_dir)).resolve_sources(sources) == expected


@pytest.mark.parametrize(("source", "message"), [
    ("missing.txt", "'missing.txt': not found in the build context"),
    ("*.nope", "'\\*.nope': no files match the pattern"),
    ("link-out", "'link-out': not found"),          # a link that points out resolves inside: absent
    ("link-abs-out", "'link-abs-out': not found"),
    ("src/main.py/x", "'src/main.py/x': not found"),
])
def test_missing_sources_are_named(ctx_dir: Path, source: str, message: str) -> None:
    with pytest.raises(ContextError, match=f"^Dockerfile:3: COPY/ADD source {message}"):
        open_context(str(ctx_dir)).resolve_sources(["a.txt", source], where="Dockerfile:3: ")


def test_ignored_sources_are_absent_and_say_why(ctx_dir: Path) -> None:
    (ctx_dir / ".dockerignore").write_text("*.txt\nsrc/util\n!src/util/x.py\n")
    ctx = open_context(str(ctx_dir))
    with pytest.raises(ContextError, match="'a.txt' is excluded by .dockerignore"):
        ctx.resolve_sources(["a.txt"])
    assert ctx.resolve_sources(["*"]) == [".dockerignore", "Dockerfile", "c.md", "empty", "link-abs",
                                          "link-dir", "link-in", "src"]
    assert ctx.resolve_sources(["src/util/*"]) == ["src/util/x.py"]
    with pytest.raises(ContextError):
        ctx.resolve_sources(["link-abs-out"])


def test_bad_wildcard_is_an_error(ctx_dir: Path) -> None:
    with pytest.raises(ContextError, match="bad wildcard"):
        open_context(str(ctx_dir)).resolve_sources(["[a"])


# -- checksums ---------------------------------------------------------------------------------

def _sum(ctx_dir: Path, srcs: list[str], **kw: object) -> str:
    ctx = open_context(str(ctx_dir))
    return ctx.checksum(ctx.resolve_sources(srcs), **kw)  # type: ignore[arg-type]


def test_checksum_is_stable_and_ignores_mtime_and_owner(ctx_dir: Path, store_root: Path) -> None:
    first = _sum(ctx_dir, ["src"])
    assert _sum(ctx_dir, ["src"]) == first
    os.utime(ctx_dir / "src/main.py", (1, 1))
    os.chown(ctx_dir / "src/main.py", 1234, 1234)
    assert _sum(ctx_dir, ["src"]) == first
    assert _sum(ctx_dir, ["src"], owner=(1, 1)) != first          # owner after --chown is keyed


@pytest.mark.parametrize("change", ["content", "mode", "new-file", "rename", "symlink-target", "ignore"])
def test_checksum_changes_with_what_copy_copies(ctx_dir: Path, store_root: Path, change: str) -> None:
    before = _sum(ctx_dir, ["."])
    time.sleep(0.01)
    if change == "content":
        (ctx_dir / "src/util/y.txt").write_text("Y")
    elif change == "mode":
        os.chmod(ctx_dir / "src/util/y.txt", 0o600)
    elif change == "new-file":
        (ctx_dir / "src/new").write_text("")
    elif change == "rename":
        os.rename(ctx_dir / "c.md", ctx_dir / "d.md")
    elif change == "symlink-target":
        os.unlink(ctx_dir / "link-in")
        (ctx_dir / "link-in").symlink_to("a.txt")
    elif change == "ignore":
        (ctx_dir / ".dockerignore").write_text("*.md\n")
        assert _sum(ctx_dir, ["src"]) == _sum(ctx_dir, ["src"])
        before = _sum(ctx_dir, ["."])
        os.unlink(ctx_dir / "c.md")
        after = _sum(ctx_dir, ["."])  # an ignored file's removal changes nothing COPY sees
        assert after == before
        return
    assert _sum(ctx_dir, ["."]) != before


def test_checksum_respects_ignore_exceptions_and_excludes(ctx_dir: Path, store_root: Path) -> None:
    base = _sum(ctx_dir, ["src"])
    assert _sum(ctx_dir, ["src"], excludes=["**/*.txt"]) != base
    (ctx_dir / ".dockerignore").write_text("src/util\n!src/util/x.py\n")
    with_ignore = _sum(ctx_dir, ["src"])
    (ctx_dir / "src/util/y.txt").write_text("changed, but ignored")
    assert _sum(ctx_dir, ["src"]) == with_ignore
    (ctx_dir / "src/util/x.py").write_text("changed, re-included")
    assert _sum(ctx_dir, ["src"]) != with_ignore


def test_stat_cache_avoids_rereading_unchanged_files(ctx_dir: Path, store_root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        (ctx_dir / f"many/{i}").parent.mkdir(exist_ok=True)
        (ctx_dir / f"many/{i}").write_text(str(i))
    past = time.time() - 10
    for p in (ctx_dir / "many").iterdir():
        os.utime(p, (past, past))
    monkeypatch.setattr(statcache_mod, "_RACY_NS", 0)  # files written this second count as settled
    cold = _sum(ctx_dir, ["many"])
    files = list((store_root / "cache" / "statcache").iterdir())
    assert len(files) == 1
    reads: list[str] = []
    real_hash = context_mod._hash_file

    def counting_hash(path: str) -> bytes:
        reads.append(path)
        return real_hash(path)

    monkeypatch.setattr(context_mod, "_hash_file", counting_hash)
    assert _sum(ctx_dir, ["many"]) == cold and reads == []
    (ctx_dir / "many/3").write_text("changed")
    assert _sum(ctx_dir, ["many"]) != cold
    assert reads == [str(ctx_dir / "many/3")]


def test_racily_clean_files_are_not_cached(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    cache = StatCache(tmp_path / "cache")
    view = RootView(tmp_path)
    checksum_sources(view, ["f"], statcache=cache)
    assert cache.entries == {}  # written less than a second before the scan


def test_corrupt_stat_cache_is_ignored(ctx_dir: Path, store_root: Path) -> None:
    first = _sum(ctx_dir, ["src"])
    d = store_root / "cache" / "statcache"
    d.mkdir(parents=True, exist_ok=True)
    for p in list(d.iterdir()) or [d / "x"]:
        p.write_bytes(b"\x00garbage")
    assert _sum(ctx_dir, ["src"]) == first


def test_checksum_of_a_layered_rootfs_with_whiteouts(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower", {"app/a": "1", "app/b": "2", "app/gone": "3", "etc/x": "x"})
    upper = make_tree(tmp_path / "upper", {"app/b": "22", "app/.wh.gone": ""})
    merged = make_tree(tmp_path / "merged", {"app/a": "1", "app/b": "22", "etc/x": "x"})
    for p in [*merged.rglob("*"), *lower.rglob("*"), *upper.rglob("*"), merged, lower, upper]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    layered = RootView([upper, lower])
    assert layered.listdir("app") == ["a", "b"]
    assert checksum_sources(layered, ["app"]) == checksum_sources(RootView(merged), ["app"])
    assert expand_sources(layered, ["app/*"]) == ["app/a", "app/b"]
    with pytest.raises(ContextError):
        expand_sources(layered, ["app/gone"])


def test_overlay_style_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower", {"d/old": "o", "d/keep": "k", "e/x": "x", "f": "f"})
    upper = make_tree(tmp_path / "upper", {"d/new": "n", "e/": None})
    os.mknod(upper / "f", 0o600 | 0o020000, 0)  # a 0:0 character device: a whiteout
    (upper / "e" / ".wh..wh..opq").write_text("")
    view = RootView([upper, lower])
    assert view.listdir("") == ["d", "e"]
    assert view.listdir("d") == ["keep", "new", "old"]
    assert view.listdir("e") == []
    assert view.lstat("f") is None and view.lstat("e/x") is None


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "r", {"a/b/": None, "up": "-> ../../..", "abs": "-> /a", "loop": "-> loop",
                                      "a/b/rel": "-> ../../abs/b"})
    view = RootView(root)
    assert view.resolve("up/a") == "a"
    assert view.resolve("abs/b") == "a/b"
    assert view.resolve("a/b/rel") == "a/b"
    assert view.resolve("abs", follow_last=False) == "abs"
    with pytest.raises(BuildError, match="too many links"):
        view.resolve("loop")


def test_resolve_within_a_directory_is_a_chroot(tmp_path: Path) -> None:
    """ADD's archive extraction resolves as if chrooted into its destination: an absolute link
    starts there again and `..` stops there."""
    root = make_tree(tmp_path / "r", {"d/x/": None, "d/abs": "-> /x", "d/up": "-> ../../..", "x/": None})
    view = RootView(root)
    assert view.resolve("d/abs/f", within="d") == "d/x/f"
    assert view.resolve("d/up/f", within="d") == "d/f"
    assert view.resolve("d/abs/f") == "x/f"  # from the image root, the same link leads elsewhere


def test_all_lists_every_public_name() -> None:
    public = {n for n, v in vars(context_mod).items() if not n.startswith("_") and callable(v)
              and getattr(v, "__module__", "") == context_mod.__name__}
    assert public == set(context_mod.__all__)


def test_checksum_with_preserved_owners_sees_owner_changes(ctx_dir: Path) -> None:
    view = RootView(ctx_dir)
    before = checksum_sources(view, ["src"], preserve_owner=True)
    assert checksum_sources(view, ["src"]) != before
    os.lchown(ctx_dir / "src/util", 5, 5)
    assert checksum_sources(view, ["src"], preserve_owner=True) != before


def test_layered_view_never_follows_a_lower_layer_symlink_on_the_host(tmp_path: Path) -> None:
    secret = make_tree(tmp_path / "host-secret", {"passwd": "host secret"})
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "a").symlink_to(secret)             # absolute host path in a hostile layer
    upper = make_tree(tmp_path / "upper", {"a/": None})
    view = RootView([upper, lower])
    assert view.lstat("a/passwd") is None        # the upper dir hides the lower symlink's subtree
    assert view.listdir("a") == []
    (tmp_path / "empty-upper").mkdir()
    only_lower = RootView([tmp_path / "empty-upper", lower])
    assert only_lower.resolve("a/passwd") == str(secret).lstrip("/") + "/passwd"  # resolved inside the root
    assert only_lower.lstat(only_lower.resolve("a/passwd")) is None


def test_stat_cache_forgets_deleted_files_after_a_whole_context_walk(ctx_dir: Path, store_root: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache_mod, "_RACY_NS", -10**18)  # cache even files written just now
    _sum(ctx_dir, ["."])
    cache_file = next((store_root / "cache" / "statcache").iterdir())
    assert "src/util/y.txt" in StatCache(cache_file).entries
    os.unlink(ctx_dir / "src/util/y.txt")
    _sum(ctx_dir, ["src/main.py"])
    assert "src/util/y.txt" in StatCache(cache_file).entries   # a partial walk proves nothing
    _sum(ctx_dir, ["."])
    assert "src/util/y.txt" not in StatCache(cache_file).entries


def test_checksum_table_names_each_entry_and_shares_the_digest(ctx_dir: Path, store_root: Path) -> None:
    ctx = open_context(str(ctx_dir))
    rels = ctx.resolve_sources(["src", "a.txt"])
    digest, table = ctx.checksum_table(rels)
    assert digest == ctx.checksum(rels)
    assert sorted(table) == ["a.txt", "src", "src/main.py", "src/util", "src/util/x.py", "src/util/y.txt"]
    assert all(v.startswith("sha256:") and len(v) == 71 for v in table.values())
    (ctx_dir / "src/util/y.txt").write_text("changed")
    digest2, table2 = ctx.checksum_table(rels)
    assert digest2 != digest
    assert {k for k in table if table[k] != table2[k]} == {"src/util/y.txt"}
    _, owned = ctx.checksum_table(rels, owner=(1, 1))
    assert owned["a.txt"] != table2["a.txt"]


def test_reuse_shares_one_walk_per_build(ctx_dir: Path, store_root: Path) -> None:
    ctx = open_context(str(ctx_dir))
    rels = ctx.resolve_sources(["src"])
    digest = ctx.checksum(rels, reuse=True)
    (ctx_dir / "src/util/y.txt").write_text("changed after the walk")
    again, table = ctx.checksum_table(rels, reuse=True)  # the walk kept by the first call
    assert again == digest and sorted(table) == ["src", "src/main.py", "src/util", "src/util/x.py", "src/util/y.txt"]
    assert ctx.checksum(rels) != digest                   # without reuse: a fresh walk
    assert ctx.checksum(rels, excludes=["*.txt"], reuse=True) != digest


def test_absurdly_deep_trees_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path
    for _ in range(300):
        path = path / "d"
    path.mkdir(parents=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)  # stands for a tree deeper than Python's default limit of 1,000
    try:
        with pytest.raises(ContextError, match="nested too deeply"):
            checksum_sources(RootView(tmp_path), ["d"])
    finally:
        sys.setrecursionlimit(limit)


def test_fsview_all_lists_every_public_name() -> None:
    from builder.build import fsview

    public = {n for n, v in vars(fsview).items() if not n.startswith("_") and callable(v)
              and getattr(v, "__module__", "") == fsview.__name__}
    assert public == set(fsview.__all__)
