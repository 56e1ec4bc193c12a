"""COPY/ADD file operations into a layer directory: Docker's rules, ownership, modes, archives, URLs."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import io
import lzma
import os
import shutil
import subprocess
import sys
import stat
import tarfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

import pytest
import zstandard

from builder.build.files import copy as copymod, extract, ownership, regular, reuse, writer
from builder.build.files.copy import HeredocSource, copy_files
from builder.build.files.extract import extract_archive, is_archive
from builder.build.files.ownership import parse_chmod, resolve_owner
from builder.build.sources.http import FetchedFile, fetch_url
from builder.build.dockerignore import PatternMatcher
from builder.errors import BuildError, ContextError
from builder.build.fsview import RootView
from tests.builder.context_helpers import make_tree

MTIME = 1_600_000_000


def tree(root: Path) -> dict[str, str]:
    """path -> "type mode uid:gid content-or-target" for every entry below `root`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                what = "l -> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                what = "d"
            else:
                what = "f " + p.read_text(errors="replace")
            out[rel] = f"{stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid} {what}"
    return out


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "src", {
        "a.txt": "a", "b.txt": "b", "exec.sh": "#!/bin/sh\n",
        "dir/one": "1", "dir/sub/two": "2", "dir/link": "-> one", "dir/.hidden": "h",
        "link-to-file": "-> a.txt", "link-to-dir": "-> /dir",
    })
    os.chmod(root / "exec.sh", 0o755)
    os.chmod(root / "dir" / "sub", 0o700)
    os.chown(root / "a.txt", 1000, 1000)
    for p in [*root.rglob("*"), root]:
        os.utime(p, (MTIME, MTIME), follow_symlinks=False)
    return root


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """The image copied into: /etc/passwd, /etc/group, an existing dir, a symlinked dir."""
    root = make_tree(tmp_path / "target", {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        "etc/group": "root:x:0:\napp:x:1002:\nstaff:x:50:\n",
        "usr/local/": None, "opt": "-> /usr/local", "srv/": None,
    })
    os.chmod(root / "srv", 0o750)
    os.chown(root / "srv", 7, 8)
    return root


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    d = tmp_path / "layer"
    d.mkdir()
    return d


def test_single_file_to_file_and_into_dir(src: Path, layer: Path, target: Path) -> None:
    copy_files(layer, ["a.txt"], "/x/renamed", src=src, target=target)
    copy_files(layer, ["b.txt"], "/y/", src=src, target=target)
    copy_files(layer, ["exec.sh"], "/usr/local", src=src, target=target)  # an existing dir, no slash
    copy_files(layer, ["b.txt"], "rel/", src=src, target=target, workdir="/work")
    t = tree(layer)
    assert t["x/renamed"] == "644 0:0 f a"              # owner 0:0 whatever the source owner
    assert t["x"] == "755 0:0 d"                        # parents created 0755
    assert t["y/b.txt"] == "644 0:0 f b"
    assert t["usr/local/exec.sh"] == "755 0:0 f #!/bin/sh\n"
    assert t["work/rel/b.txt"] == "644 0:0 f b"
    assert (layer / "x/renamed").stat().st_mtime == MTIME  # mtimes are kept from the source


def test_directory_source_copies_its_contents(src: Path, layer: Path) -> None:
    assert copy_files(layer, ["dir"], "/app", src=src) == ["/app"]
    t = tree(layer)
    assert set(t) == {"app", "app/one", "app/sub", "app/sub/two", "app/link", "app/.hidden"}
    assert t["app/link"] == "777 0:0 l -> one"         # symlinks inside are copied as symlinks
    assert t["app/sub"] == "700 0:0 d"
    assert (layer / "app/sub").stat().st_mtime == MTIME
    assert t["app"] == "755 0:0 d"                      # the destination is made, not copied (BuildKit)


def test_top_level_symlink_source_is_followed(src: Path, layer: Path) -> None:
    copy_files(layer, ["link-to-file", "link-to-dir"], "/out/", src=src)
    t = tree(layer)
    assert t["out/link-to-file"] == "644 0:0 f a"
    assert t["out/one"] == "644 0:0 f 1"               # a symlinked dir copies the dir's contents


def test_several_sources_into_a_path_that_is_no_directory(src: Path, layer: Path, target: Path) -> None:
    """BuildKit copies them one after the other (moby/buildkit#1853): a later file replaces an
    earlier one, directories merge, a file after a directory goes into it."""
    copy_files(layer, ["a.txt", "b.txt"], "/file", src=src, target=target)
    assert (layer / "file").read_text() == "b"
    copy_files(layer, ["dir", "dir/sub", "a.txt"], "/merged", src=src, target=target)
    assert {"merged/one", "merged/two", "merged/a.txt"} <= set(tree(layer))
    copy_files(layer, ["a.txt", "b.txt"], "/srv", src=src, target=target)  # exists as a dir in the image
    assert {"srv/a.txt", "srv/b.txt"} <= set(tree(layer))


def test_existing_parent_dirs_are_copied_up_and_symlinks_followed(src: Path, layer: Path, target: Path) -> None:
    copy_files(layer, ["a.txt"], "/srv/data/", src=src, target=target)
    copy_files(layer, ["b.txt"], "/opt/", src=src, target=target)  # /opt -> /usr/local in the image
    t = tree(layer)
    assert t["srv"] == "750 7:8 d" and t["srv/data"] == "755 0:0 d"
    assert t["usr/local/b.txt"] == "644 0:0 f b" and "opt" not in t


def test_link_never_looks_at_the_target(src: Path, layer: Path, target: Path) -> None:
    copy_files(layer, ["b.txt"], "/opt/", src=src, target=target, link=True)
    copy_files(layer, ["a.txt"], "/srv", src=src, target=target, link=True)
    t = tree(layer)
    assert t["opt/b.txt"] == "644 0:0 f b" and t["srv"] == "644 0:0 f a"


@pytest.mark.parametrize(("spec", "ids"), [("app", (1001, 1002)), ("app:staff", (1001, 50)), ("10", (10, 10)),
                                           ("10:20", (10, 20)), ("app:7", (1001, 7)), ("0:app", (0, 1002)),
                                           ("1001", (1001, 1001)), ("app:", (1001, 1002))])
def test_resolve_owner(target: Path, spec: str, ids: tuple[int, int]) -> None:
    assert resolve_owner(spec, target) == ids


@pytest.mark.parametrize(("spec", "message"), [("nobody", "unable to find user nobody"),
                                               ("app:nogroup", "unable to find group nogroup"),
                                               (":app", "missing user")])
def test_resolve_owner_errors(target: Path, spec: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        resolve_owner(spec, target)


def test_chown_applies_to_files_and_created_parents(src: Path, layer: Path, target: Path) -> None:
    copy_files(layer, ["dir"], "/home/app/", src=src, target=target, owner=resolve_owner("app", target))
    t = tree(layer)
    assert all(v.split()[1] == "1001:1002" for v in t.values())


@pytest.mark.parametrize(("spec", "file_mode", "dir_mode"), [
    ("640", 0o640, 0o640), ("0755", 0o755, 0o755), ("u+x", 0o744, 0o700), ("go-r", 0o600, 0o700),
    ("a=rX", 0o444, 0o555), ("u=rwx,g=rx,o=", 0o750, 0o750), ("+x", 0o755, 0o711),
])
def test_chmod_octal_and_symbolic(src: Path, layer: Path, spec: str, file_mode: int, dir_mode: int) -> None:
    copy_files(layer, ["dir"], "/d", src=src, chmod=spec)
    assert stat.S_IMODE((layer / "d/one").stat().st_mode) == file_mode
    assert stat.S_IMODE((layer / "d/sub").stat().st_mode) == dir_mode  # source dir is 0700
    # the destination BuildKit makes takes an octal mode (fsutil's MkdirAll), not a symbolic one
    assert stat.S_IMODE((layer / "d").stat().st_mode) == (dir_mode if spec[0].isdigit() else 0o755)


def test_octal_chmod_is_the_mode_of_every_directory_the_copy_makes(src: Path, layer: Path, target: Path) -> None:
    """BuildKit (fsutil's MkdirAll with --chmod's mode; maintainers: intended, umask aside)."""
    copy_files(layer, ["a.txt"], "/srv/new/deeper/f", src=src, target=RootView([layer, target]), chmod="640")
    t = tree(layer)
    assert t["srv/new"] == "640 0:0 d" and t["srv/new/deeper"] == "640 0:0 d"
    assert t["srv"] == "750 7:8 d"  # an existing directory keeps its mode


@pytest.mark.parametrize("bad", ["999", "u+q", "rwx", "8"])
def test_chmod_rejects_bad_specs(bad: str) -> None:
    with pytest.raises(BuildError, match="invalid --chmod"):
        parse_chmod(bad)


def test_exclude_and_parents(src: Path, layer: Path) -> None:
    copy_files(layer, ["dir"], "/e", src=src, excludes=["sub", "*.hidden"])
    assert set(tree(layer)) == {"e", "e/one", "e/link"}
    copy_files(layer, ["dir"], "/six", src=src, excludes=["*"])  # BuildKit: the source dir itself is not matched
    copy_files(layer, ["dir", "a.txt"], "/seven/", src=src, excludes=["dir", "*.txt"])
    assert {p for p in tree(layer) if p.startswith(("six", "seven"))} == {"six", "seven", "seven/one", "seven/link",
                                                                          "seven/sub", "seven/sub/two", "seven/.hidden"}
    copy_files(layer, ["a.txt", "dir/sub/two"], "/p/", src=src, parents=True)
    t = tree(layer)
    assert t["p/a.txt"] == "644 0:0 f a" and t["p/dir/sub/two"] == "644 0:0 f 2"


def test_parents_recreates_the_source_directories_with_their_metadata(src: Path, layer: Path, target: Path) -> None:
    """BuildKit's copier makes each directory --parents recreates as a copy of the source one;
    one that exists already only takes the source's mode."""
    os.chmod(src / "dir" / "sub", 0o750)
    os.utime(src / "dir" / "sub", (MTIME, MTIME))
    os.chmod(src / "dir", 0o770)
    (target / "p" / "dir").mkdir(parents=True)
    os.chown(target / "p" / "dir", 7, 7)
    copy_files(layer, ["dir/sub/two"], "/p/", src=src, target=RootView([layer, target]), parents=True,
               owner=(5, 6))
    t = tree(layer)
    assert t["p/dir/sub"] == "750 5:6 d" and (layer / "p/dir/sub").stat().st_mtime == MTIME
    assert t["p/dir"] == "770 7:7 d" and t["p/dir/sub/two"] == "644 5:6 f 2"
    copy_files(layer, ["dir/sub"], "/q/", src=src, parents=True)
    assert tree(layer)["q/dir/sub"] == "750 0:0 d" and tree(layer)["q/dir"] == "770 0:0 d"


def test_dockerignore_applies_inside_copied_dirs(src: Path, layer: Path) -> None:
    ignore = PatternMatcher(["dir/sub", "!dir/sub/two", "**/.hidden"])
    copy_files(layer, ["dir"], "/i", src=src, ignore=ignore)
    assert set(tree(layer)) == {"i", "i/one", "i/link", "i/sub", "i/sub/two"}


def test_hardlinks_inside_a_copy_stay_hardlinks(src: Path, layer: Path) -> None:
    os.link(src / "dir/one", src / "dir/one-again")
    copy_files(layer, ["dir"], "/h", src=src)
    assert (layer / "h/one").stat().st_ino == (layer / "h/one-again").stat().st_ino
    copy_files(layer, ["dir/one", "dir/one-again"], "/two/", src=src)  # two sources: two files, as BuildKit
    assert (layer / "two/one").stat().st_ino != (layer / "two/one-again").stat().st_ino


def test_copy_replaces_what_is_in_the_way(src: Path, layer: Path) -> None:
    copy_files(layer, ["a.txt"], "/x", src=src)
    copy_files(layer, ["dir"], "/x", src=src)       # a file replaced by a directory
    assert (layer / "x/one").is_file()
    copy_files(layer, ["b.txt"], "/x/one", src=src)  # a file replaced by a file
    assert (layer / "x/one").read_text() == "b"


def test_copy_from_a_layered_rootfs(tmp_path: Path, layer: Path) -> None:
    lower = make_tree(tmp_path / "l", {"app/a": "1", "app/gone": "x"})
    upper = make_tree(tmp_path / "u", {"app/b": "2", "app/.wh.gone": ""})
    copy_files(layer, ["app"], "/app", src=RootView([upper, lower]))
    assert sorted(tree(layer)) == ["app", "app/a", "app/b"]


def test_heredoc_sources(layer: Path) -> None:
    copy_files(layer, [HeredocSource("script.sh", b"echo hi\n")], "/usr/bin/", chmod="755")
    copy_files(layer, [HeredocSource("EOF", b"x=1\n")], "/etc/app.conf")
    t = tree(layer)
    assert t["usr/bin/script.sh"] == "755 0:0 f echo hi\n" and t["etc/app.conf"] == "644 0:0 f x=1\n"


def test_missing_source_is_a_context_error(src: Path, layer: Path) -> None:
    with pytest.raises(ContextError, match="Dockerfile:2: COPY/ADD source 'nope': not found"):
        copy_files(layer, ["nope"], "/x", src=src, where="Dockerfile:2: ")


# -- ADD: archives ------------------------------------------------------------------------------

def _tar_bytes(members: Sequence[tuple[str, str, bytes | str]]) -> bytes:
    """members: (name, kind in f/d/l/h, data or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = MTIME, 33, 33
            if kind == "f":
                body = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(body), 0o640
                tf.addfile(info, io.BytesIO(body))
                continue
            info.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE}[kind]
            info.mode = 0o755
            if kind in "lh":
                info.linkname = str(data)
            tf.addfile(info)
    return buf.getvalue()


COMPRESSORS = {"none": lambda b: b, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
               "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_add_unpacks_local_archives(tmp_path: Path, layer: Path, codec: str) -> None:
    data = COMPRESSORS[codec](_tar_bytes([("pkg/", "d", ""), ("pkg/bin/tool", "f", "T"), ("pkg/l", "l", "bin/tool"),
                                          ("pkg/h", "h", "pkg/bin/tool")]))
    srcdir = tmp_path / "ctx"
    srcdir.mkdir()
    (srcdir / "archive.bin").write_bytes(data)  # detected by content, not by name
    assert is_archive(srcdir / "archive.bin")
    copy_files(layer, ["archive.bin"], "/opt", src=srcdir, unpack=True)
    t = tree(layer)
    # owners and modes from the archive: the hard link's header (0755) is the last word on the shared inode
    assert t["opt/pkg/bin/tool"] == "755 33:33 f T"
    assert t["opt/pkg/l"] == "777 33:33 l -> bin/tool"
    assert (layer / "opt/pkg/h").stat().st_ino == (layer / "opt/pkg/bin/tool").stat().st_ino
    assert (layer / "opt/pkg/bin/tool").stat().st_mtime == MTIME


def test_add_with_chown_owns_archive_entries_but_chmod_does_not_reach_them(tmp_path: Path, layer: Path) -> None:
    (tmp_path / "a.tar").write_bytes(_tar_bytes([("d/f", "f", "x")]))   # d/ is implied, not listed
    copy_files(layer, ["a.tar"], "/o/", src=tmp_path, unpack=True, owner=(5, 6), chmod="600")
    t = tree(layer)
    assert t["o/d/f"] == "640 5:6 f x"        # as BuildKit (since 2025; buildah keeps the archive's 33:33)
    assert t["o/d"] == "755 5:6 d" and t["o"] == "755 5:6 d"
    copy_files(layer, ["a.tar"], "/k/", src=tmp_path, unpack=True)
    assert tree(layer)["k/d/f"] == "640 33:33 f x"  # without --chown the archive's owners stay


def test_copy_never_unpacks_and_non_archives_are_copied(tmp_path: Path, layer: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(b"not a tar at all" * 100))
    (tmp_path / "b.tar").write_bytes(_tar_bytes([("f", "f", "x")]))
    assert not is_archive(tmp_path / "a.tar.gz")
    copy_files(layer, ["a.tar.gz"], "/add/", src=tmp_path, unpack=True)
    copy_files(layer, ["b.tar"], "/copy/", src=tmp_path)
    assert (layer / "add/a.tar.gz").is_file() and (layer / "copy/b.tar").is_file()


@pytest.mark.parametrize("members", [
    [("../../escape", "f", "x")],
    [("/abs/escape", "f", "x")],
    [("ln", "l", "/"), ("ln/escape", "f", "x")],
    [("ln", "l", "../../.."), ("ln/escape", "f", "x")],
    [("d/", "d", ""), ("d/ln", "l", "../../../.."), ("d/ln/escape", "f", "x")],
], ids=["dotdot", "absolute", "symlink-root", "symlink-up", "nested-symlink"])
def test_hostile_archives_stay_inside(tmp_path: Path, members: list[tuple[str, str, str]]) -> None:
    dest = tmp_path / "a" / "b" / "dest"
    extract_archive(io.BytesIO(_tar_bytes(members)), dest, name="evil.tar")
    assert [p for p in tmp_path.rglob("escape")] == [p for p in dest.rglob("escape")]
    assert len(list(dest.rglob("escape"))) == 1


def test_hardlink_out_of_the_archive_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    with pytest.raises(BuildError, match="points to no file in the archive"):
        extract_archive(io.BytesIO(_tar_bytes([("h", "h", "../secret")])), tmp_path / "dest", name="x.tar")


def test_hardlink_header_sets_the_shared_inodes_mode(tmp_path: Path) -> None:
    """Docker's untar chmods a hard link by its own header (0755 here, the file's was 0640), so the
    file it links to takes that mode too (BuildKit's ADD, checked by tests/conformance)."""
    dest = tmp_path / "dest"
    extract_archive(io.BytesIO(_tar_bytes([("f", "f", "x"), ("h", "h", "f")])), dest, name="x.tar")
    assert os.stat(dest / "f").st_ino == os.stat(dest / "h").st_ino
    assert stat.S_IMODE(os.stat(dest / "f").st_mode) == 0o755


def test_corrupt_archive_is_a_build_error(tmp_path: Path) -> None:
    data = gzip.compress(_tar_bytes([("f", "f", "x" * 5000)]))[:-200]
    with pytest.raises(BuildError, match="cannot unpack bad.tgz"):
        extract_archive(io.BytesIO(data), tmp_path / "d", name="bad.tgz")


# -- ADD: URLs ----------------------------------------------------------------------------------

BODY = b"remote content\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "/files/elsewhere.bin")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        if not self.path.startswith("/nodate"):
            self.send_header("Last-Modified", LAST_MODIFIED)
        if self.path.startswith("/disposition"):
            self.send_header("Content-Disposition", 'attachment; filename="named.bin"')
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_add_url_with_checksum_and_last_modified(http_url: str, tmp_path: Path, layer: Path) -> None:
    good = "sha256:" + hashlib.sha256(BODY).hexdigest()
    fetched = fetch_url(f"{http_url}/files/tool.tar.gz?x=1", tmp_path / "dl", checksum=good)
    assert fetched.name == "tool.tar.gz" and fetched.digest == good
    copy_files(layer, [fetched], "/downloads/", src=None)
    out = layer / "downloads/tool.tar.gz"
    assert out.read_bytes() == BODY and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.stat().st_mtime == 1445412480   # Last-Modified
    copy_files(layer, [fetched], "/renamed", chmod="644")
    assert stat.S_IMODE((layer / "renamed").stat().st_mode) == 0o644


def test_add_url_names(http_url: str, tmp_path: Path) -> None:
    """As BuildKit names them: the URL's last path element, never Content-Disposition or a redirect's."""
    assert fetch_url(f"{http_url}/disposition/x", tmp_path).name == "x"
    assert fetch_url(f"{http_url}/moved/tool.bin", tmp_path).name == "tool.bin"
    assert fetch_url(f"{http_url}/", tmp_path).name == "__unnamed__"
    assert fetch_url(f"{http_url}/nodate/f", tmp_path).mtime is None


def test_add_url_errors(http_url: str, tmp_path: Path) -> None:
    bad = "sha256:" + "0" * 64
    with pytest.raises(BuildError, match="checksum mismatch: expected sha256:0+, got sha256:"):
        fetch_url(f"{http_url}/f", tmp_path / "dl", checksum=bad)
    assert list((tmp_path / "dl").iterdir()) == []  # nothing kept
    with pytest.raises(BuildError, match="answered 404"):
        fetch_url(f"{http_url}/missing", tmp_path)
    with pytest.raises(BuildError, match="invalid --checksum"):
        fetch_url(f"{http_url}/f", tmp_path, checksum="md5:abc")
    with pytest.raises(BuildError, match="invalid --checksum"):
        fetch_url(f"{http_url}/f", tmp_path, checksum="sha512:" + "0" * 64)  # a sha256's length
    # sha384 and sha512 as BuildKit's digests allow; the file is still stored by its sha256
    for algo in ("sha384", "sha512"):
        fetched = fetch_url(f"{http_url}/f", tmp_path / algo, checksum=f"{algo}:{hashlib.new(algo, BODY).hexdigest()}")
        assert fetched.digest == "sha256:" + hashlib.sha256(BODY).hexdigest()
    with pytest.raises(BuildError, match="checksum mismatch: expected sha512:0+, got sha512:"):
        fetch_url(f"{http_url}/f", tmp_path / "bad512", checksum="sha512:" + "0" * 128)
    with pytest.raises(BuildError, match="git sources are not"):
        fetch_url("https://github.com/moby/buildkit.git", tmp_path)
    with pytest.raises(BuildError, match="cannot download"):
        fetch_url("http://127.0.0.1:9/x", tmp_path, timeout=5)


def test_fetched_file_is_a_plain_record(tmp_path: Path) -> None:
    f = FetchedFile(tmp_path / "x", "x", "sha256:" + "0" * 64)
    assert f.mode == 0o600 and f.mtime is None


@pytest.mark.parametrize("module", [copymod, extract, ownership, regular, reuse, writer], ids=lambda m: m.__name__)
def test_all_lists_every_public_name(module: ModuleType) -> None:
    public = {n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
              and getattr(v, "__module__", "") == module.__name__}
    assert public == set(module.__all__)


def test_no_items_makes_the_destination_directory(layer: Path, target: Path) -> None:
    assert copy_files(layer, [], "/srv/new/deep/", target=target, owner=(5, 5)) == ["/srv/new/deep"]
    t = tree(layer)
    assert t["srv"] == "750 7:8 d" and t["srv/new"] == "755 5:5 d" and t["srv/new/deep"] == "755 5:5 d"


def test_copy_from_a_stage_can_keep_its_owners(src: Path, layer: Path) -> None:
    os.chown(src / "dir/one", 33, 34)
    copy_files(layer, ["dir"], "/kept", src=src, preserve_owner=True)
    copy_files(layer, ["dir"], "/reset", src=src)
    copy_files(layer, ["dir"], "/chowned", src=src, preserve_owner=True, owner=(1, 1))
    t = tree(layer)
    assert t["kept/one"].split()[1] == "33:34" and t["reset/one"].split()[1] == "0:0"
    assert t["chowned/one"].split()[1] == "1:1"


def test_parents_with_a_pivot(src: Path, layer: Path) -> None:
    from builder.build.context import expand_sources

    view = RootView(src)
    rels = expand_sources(view, ["./dir/./sub/*", "dir/one"])
    assert rels == ["dir/./sub/two", "dir/one"]
    copy_files(layer, rels, "/pv/", src=view, parents=True)
    t = tree(layer)
    assert t["pv/sub/two"] == "644 0:0 f 2" and t["pv/dir/one"] == "644 0:0 f 1"


def test_file_capabilities_and_user_xattrs_are_copied(src: Path, layer: Path) -> None:
    try:
        os.setxattr(src / "exec.sh", "user.note", b"kept")
    except OSError:
        pytest.skip("this filesystem takes no user xattrs")
    os.setxattr(src / "exec.sh", "trusted.overlay.origin", b"x")
    copy_files(layer, ["exec.sh"], "/bin/", src=src)
    assert os.getxattr(layer / "bin/exec.sh", "user.note") == b"kept"
    assert "trusted.overlay.origin" not in os.listxattr(layer / "bin/exec.sh")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_unreadable_source_is_a_one_line_error(tmp_path: Path) -> None:
    """As an unprivileged user (for real, with setpriv), an unreadable file is a clear error."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pybuild-unreadable-"))  # reachable by `nobody`
    try:
        os.chmod(base, 0o777)
        src = make_tree(base / "src", {"b.txt": "b"})
        os.chmod(src, 0o755)
        os.chmod(src / "b.txt", 0)
        out_dir = base / "out"
        out_dir.mkdir()
        os.chmod(out_dir, 0o777)
        program = ("import sys\nfrom builder.errors import BuildError\nfrom builder.build.files.copy import copy_files\n"
                   "from builder.build.context import checksum_sources\nfrom builder.build.fsview import RootView\n"
                   "for step in ('checksum', 'copy'):\n"
                   "    try:\n"
                   "        if step == 'checksum': checksum_sources(RootView(sys.argv[1]), ['b.txt'])\n"
                   "        else: copy_files(sys.argv[2], ['b.txt'], '/x', src=sys.argv[1], where='Dockerfile:3: ')\n"
                   "    except BuildError as e: print(step, e)\n")
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                               program, str(src), str(out_dir)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2], timeout=60)
        assert proc.stderr == ""
        assert proc.stdout.splitlines() == [
            f"checksum cannot read {src}/b.txt: Permission denied",
            f"copy Dockerfile:3: COPY/ADD 'b.txt': Permission denied ({src}/b.txt)",
        ]
    finally:
        shutil.rmtree(base)


def test_wildcard_exception_below_an_excluded_dir_is_walked_as_buildkit_does(tmp_path: Path, layer: Path) -> None:
    """BuildKit's walker enters an excluded dir when an exception with wildcards may match below
    it (buildah's legacy walker only for literal prefixes, so it would drop a/src/keep.md)."""
    ctx = make_tree(tmp_path / "ctx", {"a/src/keep.md": "k", "a/src/other": "o", "b/x": "x", "c": "c"})
    ignore = PatternMatcher(["[ab]*", "![ab]*/src/keep.md"])
    copy_files(layer, [""], "/ctx", src=ctx, ignore=ignore)
    assert sorted(tree(layer)) == ["ctx", "ctx/a", "ctx/a/src", "ctx/a/src/keep.md", "ctx/c"]
