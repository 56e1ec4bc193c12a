"""A fuse-overlayfs upper dir put in the kernel overlay's form (`builder.build.fuseupper`) gives the
same layer as the kernel's overlayfs after the same operations on the same lower layers (both
mounted here, as root, in a private mount namespace). The rootless forms are covered by
tests/rootless (the same Dockerfiles give the same layer digests with either driver)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from builder.build.fuseupper import canonicalize
from builder.oci.layer.whiteout import OPAQUE_XATTR
from builder.oci.layer.write import write_dir
from runtime.overlay import OPTIONS
from tests.conftest import requires_root, requires_tool

OLD, OLDER = 2000, 1000  # the lower layers' mtimes (below the epoch, so a moved mtime shows)

# every kind of change a RUN makes: new dirs (nested, in a new and in a lower dir), whiteouts of files
# and dirs, a dir replacing a lower dir (opaque) with a dir below it that a lower layer has (not
# opaque), a dir replacing a file, a dir where a lower layer deleted one, chmod/chown of lower dirs,
# copies-up only (append, touch, chmod of files), a replaced file (sed -i), links, a temporary file,
# a rename, a fifo
SCRIPT = """
mkdir -p new/a/b && echo x > new/a/b/f && mkdir etc/sub && echo n > etc/sub/n
rm etc/gone && rm -rf opt/old
rm -rf opt/replace && mkdir -p opt/replace/deep && echo y > opt/replace/deep/y
rm etc/file2dir && mkdir etc/file2dir && mkdir deleted
chmod 700 usr/sbin && chown 1000:1000 var/www
echo app >> etc/group && touch etc/passwd && chmod 4755 bin/prog
sed -i s/a/b/ etc2/conf
ln -s target new/l && ln etc/group new/hard
touch tmp/x && rm tmp/x
mv etc3/a etc3/b
mkfifo new/fifo
"""


def _lowers(base: Path) -> list[Path]:
    """Two snapshots in the store's form (lowest first): a base, and a layer that deletes `deleted`,
    adds a file to `etc` and makes `var` opaque."""
    l1, l2 = base / "l1", base / "l2"
    for d in ("etc", "etc2", "etc3", "opt/old", "opt/replace", "usr/sbin", "var/www", "bin", "tmp", "deleted"):
        (l1 / d).mkdir(parents=True)
    for f in ("etc/gone", "etc/file2dir", "etc/group", "etc/passwd", "etc2/conf", "etc3/a", "opt/old/o",
              "opt/replace/r", "bin/prog", "deleted/d"):
        (l1 / f).write_text("a\n")
    os.chmod(l1 / "tmp", 0o1777)
    (l2 / "etc").mkdir(parents=True)
    (l2 / "etc/froml2").write_text("2\n")
    (l2 / "var/www").mkdir(parents=True)
    os.setxattr(l2 / "var", OPAQUE_XATTR, b"y")
    os.mknod(l2 / "deleted", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    for layer, t in ((l1, OLDER), (l2, OLD)):
        for dirpath, dirnames, filenames in os.walk(layer, topdown=False):
            for name in filenames:
                os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
            os.utime(dirpath, (t, t))
    return [l1, l2]


def _run(base: Path, name: str, lowers: list[Path]) -> Path:
    upper, work, merged = base / f"{name}-upper", base / f"{name}-work", base / f"{name}-merged"
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={':'.join(str(p) for p in reversed(lowers))},upperdir={upper},workdir={work}"
    mount = (f"mount -t overlay overlay -o {opts},{OPTIONS} {merged}" if name == "kernel"
             else f"fuse-overlayfs -o {opts} {merged}")
    script = f"set -e\nmount --make-rprivate /\n{mount}\ncd {merged}\n{SCRIPT}\ncd /\numount {merged}\n"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return upper


def _layer(upper: Path, epoch: int) -> bytes:
    buf = io.BytesIO()
    write_dir(upper, buf.write, epoch=epoch)
    return buf.getvalue()


def _entries(layer: bytes) -> dict[str, tuple[object, ...]]:
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        return {m.name: (m.type, oct(m.mode), m.uid, m.gid, m.mtime, m.linkname, sorted(m.pax_headers.items()))
                for m in t.getmembers()}


@requires_root
@requires_tool("fuse-overlayfs")
def test_fuse_overlayfs_upper_gives_the_kernel_overlays_layer(tmp_path: Path) -> None:
    lowers = _lowers(tmp_path)
    epoch = int(time.time()) - 1  # what the operations make is newer: clamped, as SOURCE_DATE_EPOCH does
    kernel = _layer(_run(tmp_path, "kernel", lowers), epoch)
    fuse_upper = _run(tmp_path, "fuse", lowers)
    raw = _entries(_layer(fuse_upper, epoch))
    assert "new/a/.wh..wh..opq" in raw and raw["usr"][4] == epoch  # what it was before (else the test proves nothing)
    canonicalize(fuse_upper, lowers)
    ours, theirs = _entries(_layer(fuse_upper, epoch)), _entries(kernel)
    assert {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)} == {}
    assert _layer(fuse_upper, epoch) == kernel
    assert "opt/replace/.wh..wh..opq" in ours and "etc/file2dir/.wh..wh..opq" in ours
    assert ours["usr"][4] == OLDER and ours["var"][4] == OLD and ours["etc2"][4] == epoch
    assert not any(k.startswith("user.fuseoverlayfs") for path in fuse_upper.rglob("*")
                   for k in os.listxattr(path, follow_symlinks=False))


@requires_root
def test_whiteout_files_become_devices(tmp_path: Path) -> None:
    """fuse-overlayfs' `.wh.NAME` files (where mknod is refused) become the kernel's 0/0 devices;
    ones that hide nothing go, as do whiteouts under a new directory."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/gone").write_text("x")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/.wh.gone").write_bytes(b"")
    (upper / "etc/.wh.never").write_bytes(b"")
    (upper / "new").mkdir()
    os.setxattr(upper / "new", "user.fuseoverlayfs.opaque", b"y")
    os.mknod(upper / "new/gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    canonicalize(upper, [lower])
    assert sorted(os.listdir(upper / "etc")) == ["gone"] and os.listdir(upper / "new") == []
    assert stat.S_ISCHR(os.lstat(upper / "etc/gone").st_mode) and not os.listxattr(upper / "new")
    assert sorted(_entries(_layer(upper, int(time.time())))) == ["etc", "etc/.wh.gone", "new"]


def test_write_dir_reads_whiteout_files_as_whiteouts(tmp_path: Path) -> None:
    """Where even canonicalize cannot make a device, the `.wh.NAME` file is written as the whiteout
    entry a kernel upper gives (mode 0600, root, no content)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/.wh.gone").write_bytes(b"")
    os.chmod(tmp_path / "etc/.wh.gone", 0o700)
    entry = _entries(_layer(tmp_path, 10**10))["etc/.wh.gone"]
    assert entry[:4] == (tarfile.REGTYPE, "0o600", 0, 0)
