"""COPY/ADD compared with `buildah bud` on a busybox base: the same Dockerfile, the same file tree.

Each case is a context and a few COPY/ADD/WORKDIR lines. buildah builds them for real; we apply
the same lines with `copy_files` into one layer over the unpacked base, and the two trees (type,
mode, owner, content or link target, and file mtimes) must be equal.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import threading
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from builder.build.context import open_context
from builder.build.files.copy import copy_files
from builder.build.files.extract import extract_archive
from builder.build.files.ownership import resolve_owner
from builder.build.sources.http import fetch_url
from builder.build.fsview import RootView
from tests.builder.context_helpers import make_tree
from tests.conftest import requires_root, requires_tool

pytestmark = [requires_tool("buildah", "runc"), requires_root]
MTIME = 1_600_000_000


class Buildah:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.cmd = ["buildah", "--root", str(base / "root"), "--runroot", str(base / "run"),
                    "--storage-driver", "vfs"]

    def __call__(self, *args: str) -> str:
        proc = subprocess.run([*self.cmd, *args], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)}: {proc.stderr}")
        return proc.stdout.strip()


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Buildah]:
    b = Buildah(tmp_path_factory.mktemp("buildah"))
    ctr = b("from", "scratch")
    b("add", ctr, str(busybox_tar), "/")
    b("commit", "-q", ctr, "localhost/copybase")
    b("rm", ctr)
    yield b
    subprocess.run([*b.cmd, "rm", "--all"], capture_output=True)
    subprocess.run([*b.cmd, "rmi", "--all", "--force"], capture_output=True)


@pytest.fixture(scope="module")
def base_rootfs(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Path:
    root = tmp_path_factory.mktemp("base") / "rootfs"
    with open(busybox_tar, "rb") as f:
        extract_archive(f, root, name="busybox.tar")
    return root


def tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = "l " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                what = "d"
            elif stat.S_ISREG(st.st_mode):
                what = f"f {hashlib.sha256(p.read_bytes()).hexdigest()[:12]} mtime={int(st.st_mtime)} links={st.st_nlink}"
            else:
                what = "other"
            out[str(p.relative_to(root))] = f"{stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid} {what}"
    return out


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static file server on 127.0.0.1 for ADD URL (Last-Modified from the files' mtimes)."""
    root = tmp_path_factory.mktemp("web")
    (root / "file.txt").write_text("remote\n")
    os.utime(root / "file.txt", (1_500_000_000, 1_500_000_000))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def apply_lines(ctx_dir: Path, lines: list[str], layer: Path, base: Path) -> None:
    """Our side: the same instructions through context + files.copy (a test-sized Dockerfile reader)."""
    ctx = open_context(str(ctx_dir))
    workdir = "/"
    for line in lines:
        words = line.split()
        instr, args = words[0], words[1:]
        if instr == "WORKDIR":
            workdir = os.path.join(workdir, args[0])
            os.makedirs(layer / workdir.lstrip("/"), mode=0o755, exist_ok=True)
            continue
        flags = {}
        while args[0].startswith("--"):
            key, _, value = args.pop(0)[2:].partition("=")
            flags[key] = value
        target = RootView([layer, base])
        owner = resolve_owner(flags["chown"], target) if "chown" in flags else None
        urls = [a for a in args[:-1] if a.startswith("http://")]
        items: list = [fetch_url(u, layer.parent / "downloads") for u in urls]
        local = [a for a in args[:-1] if a not in urls]
        items += ctx.resolve_sources(local) if local else []
        copy_files(layer, items, args[-1], src=ctx.view, target=target,
                   workdir=workdir, owner=owner, chmod=flags.get("chmod"), ignore=ctx.ignore,
                   unpack=instr == "ADD")


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), MTIME, 0o750, 1, 1
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CASES: dict[str, tuple[dict[str, str | None], list[str]]] = {
    "files": ({"a": "A", "b": "B"}, ["COPY a /var/www", "COPY a b /multi/", "COPY a /renamed", "COPY b /var/www/"]),
    "dir-contents": ({"dir/one": "1", "dir/sub/two": "2", "dir/empty/": None},
                     ["COPY dir /newdir", "COPY dir /usr/", "COPY dir/ /x/y/", "COPY dir/sub /var/www"]),
    "wildcards": ({"a.txt": "a", "b.txt": "b", "c.md": "c", "dir/sub/f": "f"},
                  ["COPY *.txt /w/", "COPY d?r/sub /ws", "COPY [ab].* /br/", "COPY *.txt /last-wins"]),
    "chown": ({"a": "A", "dir/sub/f": "f"},
              ["COPY --chown=www-data dir /own/deep/", "COPY --chown=33:100 a /o2", "COPY --chown=daemon:users a /o3",
               "COPY --chown=1234 dir /numeric"]),
    "chown-from-copied-passwd": ({"passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
                                  "group": "root:x:0:\napp:x:1002:\n", "a": "A"},
                                 ["COPY passwd group /etc/", "COPY --chown=1001 a /n", "COPY --chown=app a /m",
                                  "COPY --chown=app: a /e", "COPY --chown=app:0 a /z"]),
    # (a directory COPY --chmod=640 makes is 0640 in BuildKit, 0755 in buildah: test_copy.py checks that)
    "chmod": ({"a": "A", "dir/sub/f": "f"}, ["COPY --chmod=640 dir /var/www/", "COPY --chmod=755 a /cm2",
                                           "COPY --chmod=0700 a /var/www/"]),
    "symlinks": ({"target.txt": "t", "lnk": "-> target.txt", "dir/in": "-> ../target.txt", "dir/abs": "-> /etc/passwd",
                  "dlink": "-> dir"},
                 ["COPY lnk /l/", "COPY dir /d", "COPY dlink /dl/"]),
    "dest-through-symlink": ({"a": "A", "links/www": "-> /var/www"}, ["COPY links/ /", "COPY a /www/"]),
    "dockerignore": ({".dockerignore": "*.log\nsecret\nbuild\n!build/keep\n**/*.tmp\n", "app.py": "x",
                      "debug.log": "l", "secret/key": "k", "build/keep": "k", "build/drop": "d", "src/x.tmp": "t",
                      "src/y.py": "y"},
                     ["COPY . /ctx/"]),
    "workdir": ({"a": "A"}, ["WORKDIR /app", "COPY a rel/", "COPY a .", "WORKDIR sub", "COPY a ./named"]),
    # (ADD --chown of an archive: buildah keeps the archive's owners, BuildKit chowns every entry;
    # tests/builder/test_copy.py checks BuildKit's rule)
    "add-archive": ({}, ["ADD pkg.tgz /opt/", "ADD plain.gz /p/", "ADD pkg.tgz /opt2", "ADD --chmod=600 pkg.tgz /cm/"]),
    "add-url": ({"a": "A"}, ["ADD {URL}/file.txt /u/", "ADD {URL}/file.txt /named", "ADD a {URL}/file.txt /mixed/"]),
    "dockerignore-exceptions": ({".dockerignore": "# comment\n/docs\n!docs/keep.md\n./tmp/\n**/node_modules\n*/*.bak\n"
                                                  "!important.bak\nsrc/[a-c]*.gen\nDockerfile\n.dockerignore\n",
                                 "docs/keep.md": "k", "docs/drop.md": "d", "tmp/x": "x", "a/node_modules/m": "m",
                                 "node_modules/n": "n", "src/a1.gen": "a", "src/d1.gen": "d", "x/y.bak": "y",
                                 "important.bak": "i", "src/deep/z.bak": "z"},
                                ["COPY . /ctx/", "COPY src/* /srcglob/"]),
}


def _random_ignore_case(seed: int) -> tuple[dict[str, str | None], list[str]]:
    """A context of ~120 files and a .dockerignore of random patterns (anchors, `*`, `?`, `**`,
    classes, exceptions), for a differential test against buildah's matcher."""
    import random

    rng = random.Random(seed)
    files: dict[str, str | None] = {}
    for _ in range(120):
        dirs = [rng.choice(["a", "b", "ab", "src"]) for _ in range(rng.randint(0, 3))]
        files["/".join([*dirs, rng.choice(["a.t", "b.t", "ab.t", "c", "keep.md"])])] = "x"
    pieces = ["a", "b", "ab", "src", "*", "?", "**", "[ab]*", "*.t", "a*", "?.t", "keep.md", "c"]
    literal = ["a", "b", "ab", "src", "a.t", "ab.t", "keep.md", "c"]
    lines = []
    for _ in range(12):
        prefix = rng.choice(["", "", "", "!", "/", "./"])
        # Exceptions stay literal: below an excluded directory BuildKit also tries wildcard
        # exceptions, while buildah (moby's legacy archive walker) only follows literal prefixes.
        words = literal if prefix == "!" else pieces
        lines.append(prefix + "/".join(rng.choice(words) for _ in range(rng.randint(1, 3))))
    files[".dockerignore"] = "\n".join(lines) + "\n"
    return files, ["COPY . /ctx/"]


def _write_context(ctx: Path, files: dict[str, str | None], case: str) -> None:
    ctx.mkdir(parents=True, exist_ok=True)
    make_tree(ctx, files)
    if case == "add-archive":
        (ctx / "pkg.tgz").write_bytes(_tgz({"pkg/bin/tool": b"T", "pkg/README": b"r"}))
        (ctx / "plain.gz").write_bytes(gzip.compress(b"just text"))
    os.chmod(ctx, 0o755)
    for p in ctx.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.utime(p, (MTIME, MTIME), follow_symlinks=False)


for _seed in (1, 2, 3, 4):
    CASES[f"dockerignore-random-{_seed}"] = _random_ignore_case(_seed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_tree_as_buildah(case: str, buildah: Buildah, base_rootfs: Path, tmp_path: Path, web: str) -> None:
    files, lines = CASES[case]
    lines = [line.replace("{URL}", web) for line in lines]
    ctx = tmp_path / "ctx"
    _write_context(ctx, files, case)
    (ctx / "Dockerfile").write_text("FROM localhost/copybase\n" + "\n".join(lines) + "\n")
    os.utime(ctx / "Dockerfile", (MTIME, MTIME))
    tag = f"localhost/copy-{case}"
    buildah("bud", "--runtime", "runc", "-q", "--layers=false", "-t", tag, str(ctx))
    ctr = buildah("from", tag)
    try:
        theirs = tree(Path(buildah("mount", ctr)))
    finally:
        buildah("rm", ctr)
        buildah("rmi", "-f", tag)

    layer = tmp_path / "layer"
    layer.mkdir()
    apply_lines(ctx, lines, layer, base_rootfs)
    _assert_same_tree(layer, base_rootfs, theirs, tmp_path)


STAGE = """FROM localhost/copybase AS stage
RUN mkdir -p /app/bin /app/data /app/empty && echo tool > /app/bin/tool && chmod 4755 /app/bin/tool \\
 && echo d > /app/data/d.txt && ln -s ../bin/tool /app/data/link && ln /app/data/d.txt /app/data/hard \\
 && chown -R 33:100 /app/data && chmod 700 /app/data && touch -d @1600000000 /app/bin/tool /app/data/d.txt \\
 && ln -s /app/bin /applink
"""
FROM_LINES = ["COPY --from=stage /app /copied", "COPY --from=stage /app/data/d.txt /single",
              "COPY --from=stage /app/bin/* /globbed/", "COPY --from=stage --chown=1:1 /app/data /owned/",
              "COPY --from=stage /applink/tool /through-link", "COPY --from=stage /app/empty /var/www/"]


def test_copy_from_a_stage_matches_buildah(buildah: Buildah, base_rootfs: Path, tmp_path: Path) -> None:
    """COPY --from: the stage is built by buildah and read by us from its mounted rootfs."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(STAGE + "FROM localhost/copybase\n" + "\n".join(FROM_LINES) + "\n")
    buildah("bud", "--runtime", "runc", "-q", "--layers=false", "-t", "localhost/copy-from-final", str(ctx))
    buildah("bud", "--runtime", "runc", "-q", "--layers=false", "--target", "stage", "-t", "localhost/copy-from-stage",
            str(ctx))
    final_ctr, stage_ctr = buildah("from", "localhost/copy-from-final"), buildah("from", "localhost/copy-from-stage")
    try:
        theirs = tree(Path(buildah("mount", final_ctr)))
        stage_root = RootView(buildah("mount", stage_ctr))
        layer = tmp_path / "layer"
        layer.mkdir()
        from builder.build.context import expand_sources

        for line in FROM_LINES:
            words = line.split()[1:]
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            args = [w for w in words if not w.startswith("--")]
            owner = resolve_owner(flags["chown"], base_rootfs) if "chown" in flags else None
            copy_files(layer, expand_sources(stage_root, args[:-1]), args[-1], src=stage_root,
                       target=RootView([layer, base_rootfs]), owner=owner, preserve_owner=True)
    finally:
        for ctr in (final_ctr, stage_ctr):
            buildah("rm", ctr)
        buildah("rmi", "-f", "localhost/copy-from-final", "localhost/copy-from-stage")
    _assert_same_tree(layer, base_rootfs, theirs, tmp_path)


def _assert_same_tree(layer: Path, base_rootfs: Path, theirs: dict, tmp_path: Path) -> None:
    """Our layer applied over the base rootfs gives buildah's tree, entry for entry."""
    merged = tmp_path / "merged"
    shutil.copytree(base_rootfs, merged, symlinks=True)
    _overlay(layer, merged)
    ours = tree(merged)
    changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    assert {k: (ours.get(k), theirs.get(k)) for k in changed} == {}


def _overlay(layer: Path, merged: Path) -> None:
    """Put `layer` over `merged` keeping owners, modes, mtimes and hard links."""
    subprocess.run(["cp", "-a", f"{layer}/.", str(merged)], check=True)
