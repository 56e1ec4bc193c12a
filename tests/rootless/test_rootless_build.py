"""Builds as an unprivileged user: every instruction on the busybox base, non-root owners, RUN as
USER, set-id bits, file capabilities, whiteouts. A rootless build's layers are byte-identical to a
root build's of the same Dockerfile (SOURCE_DATE_EPOCH), and buildah's rootless build of it has
the same files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import pybuild, requires_tool
from tests.rootless.conftest import Runner

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
CAPS_TAR = Path(__file__).resolve().parents[2] / "fixtures/rootless/caps.tar"  # `ping` with cap_net_raw=ep
CASES = ["basic", "copy", "copy-flags", "multistage", "config-only", "whiteout", "heredoc", "rootless",
         "rootless-overlay"]


def context(code: Path, case: str) -> Path:
    return code / "fixtures" / (case if case.startswith("rootless") else f"builds/{case}")


def case_args(ctx: Path) -> list[str]:
    expect = json.loads((ctx / "expect.json").read_text()) if (ctx / "expect.json").exists() else {}
    args = [a for k, v in expect.get("build_args", {}).items() for a in ("--build-arg", f"{k}={v}")]
    return args + (["--target", expect["target"]] if expect.get("target") else [])


@pytest.fixture(scope="module")
def root_store(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> dict[str, str]:
    env = {"PYBUILD_ROOT": str(tmp_path_factory.mktemp("root-store")), **EPOCH}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    pybuild("import", str(CAPS_TAR), "caps:1", env=env)
    return env


def diff_ids(inspect_json: str) -> list[str]:
    return json.loads(inspect_json)[0]["RootFS"]["diff_ids"]


@pytest.mark.parametrize("case", CASES)
def test_rootless_layers_equal_root_layers(case: str, user: Runner, user_store: dict[str, str],
                                           root_store: dict[str, str]) -> None:
    ctx = context(user.code, case)
    env = {**user_store, **EPOCH}
    user.pybuild("build", "-t", f"rl-{case}:1", *case_args(ctx), str(ctx), env=env)
    pybuild("build", "-t", f"rl-{case}:1", *case_args(ctx), str(ctx), env=root_store)
    ours = diff_ids(user.pybuild("inspect", f"rl-{case}:1", env=env).stdout)
    theirs = diff_ids(pybuild("inspect", f"rl-{case}:1", env=root_store).stdout)
    assert ours == theirs


@pytest.mark.parametrize("case", CASES)
def test_fuse_overlayfs_layers_equal_root_layers(case: str, user: Runner, user_store: dict[str, str],
                                                 root_store: dict[str, str]) -> None:
    """The fuse-overlayfs fallback, forced, gives the root build's layers too: its upper dir is put in
    the kernel overlay's form before it is committed (builder/build/fuseupper.py)."""
    ctx = context(user.code, case)
    env = {**user_store, **EPOCH, "PYBUILD_OVERLAY": "fuse-overlayfs"}
    user.pybuild("build", "--no-cache", "-t", f"fuse-{case}:1", *case_args(ctx), str(ctx), env=env)
    pybuild("build", "-t", f"rl-{case}:1", *case_args(ctx), str(ctx), env=root_store)
    ours = diff_ids(user.pybuild("inspect", f"fuse-{case}:1", env=env).stdout)
    theirs = diff_ids(pybuild("inspect", f"rl-{case}:1", env=root_store).stdout)
    assert ours == theirs


def layer_entries(archive: Path) -> dict[str, tarfile.TarInfo]:
    """Every entry of every layer of a docker-archive, later layers over earlier ones, keyed by path."""
    entries: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:  # type: ignore[arg-type]
                for m in inner.getmembers():
                    entries[m.name.rstrip("/")] = m
    return entries


def test_rootless_layer_entries_keep_in_image_owners(user: Runner, user_store: dict[str, str]) -> None:
    ctx = context(user.code, "rootless")
    env = {**user_store, **EPOCH}
    first = user.pybuild("build", "-q", "-t", "rl-entries:1", str(ctx), env=env).stdout
    again = user.pybuild("build", "-q", "-t", "rl-entries:1", str(ctx), env=env).stdout  # the no-op path (no userns)
    assert again == first
    work = user.workdir()
    try:
        user.pybuild("save", "-o", str(work / "img.tar"), "rl-entries:1", env=env)
        e = layer_entries(work / "img.tar")
        assert (e["home/app/f.txt"].uid, e["home/app/f.txt"].gid) == (1000, 1000)  # COPY --chown
        assert (e["nobody.txt"].uid, e["nobody.txt"].gid) == (65534, 65534)
        assert (e["home/app/mine"].uid, e["home/app/mine"].gid) == (2000, 3000)  # RUN chown as root
        assert (e["home/app/private"].uid, e["home/app/private"].mode & 0o777) == (1000, 0o700)  # RUN as USER
        assert e["bin/busybox"].mode & 0o4000 and e["home/app"].mode & 0o2000  # set-id bits
        assert "SCHILY.xattr.security.capability" in e["caps/ping"].pax_headers  # file capability
        assert "etc/.wh.os-release" in e and "opt/keep/.wh..wh..opq" in e  # whiteout, opaque dir
        out = user.pybuild("run", "--rm", "--network", "none", "rl-entries:1", "cat", "/home/app/uid",
                           "/home/app/gid", env=env).stdout
        assert out.split() == ["1000", "1000"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuse_overlayfs_gives_the_same_files(user: Runner, user_store: dict[str, str]) -> None:
    """Forced (PYBUILD_OVERLAY), the fuse-overlayfs fallback builds the same root filesystem as the
    kernel's overlayfs (and the same layers: test_fuse_overlayfs_layers_equal_root_layers)."""
    from tests.e2e.test_build_vs_buildah import tree

    ctx = context(user.code, "rootless")
    fuse = {**user_store, **EPOCH, "PYBUILD_OVERLAY": "fuse-overlayfs"}
    info = user.pybuild("info", env=fuse).stdout
    assert "overlay: fuse-overlayfs" in info, info
    work = user.workdir()
    try:
        for name, env in (("fuse", fuse), ("kernel", {**user_store, **EPOCH})):
            user.pybuild("build", "--no-cache", "-o", f"type=tar,dest={work / name}.tar", str(ctx), env=env)
            (work / name).mkdir()
            subprocess.run(["tar", "-xpf", f"{work / name}.tar", "-C", str(work / name), "--numeric-owner",
                            "--xattrs", "--xattrs-include=*"], check=True)
        assert tree(work / "fuse") == tree(work / "kernel")
        assert (work / "fuse/opt/keep/new").exists() and not (work / "fuse/opt/keep/sub").exists()
        assert os.getxattr(work / "fuse/caps/ping", "security.capability")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_info_shows_rootless_mode(user: Runner, user_store: dict[str, str]) -> None:
    info = user.pybuild("info", env=user_store).stdout
    assert "rootless: yes" in info and "uid map: 0 -> " in info and "overlay: overlay" in info, info
    assert "network: slirp4netns" in info and "cgroups: none" in info, info


def test_hostile_tar_cannot_write_outside_the_store(user: Runner, user_store: dict[str, str]) -> None:
    """ADD of a tar whose entries climb out through `..` and a symlink stays inside the image."""
    work = user.workdir()
    try:
        import io
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            link = tarfile.TarInfo("escape")
            link.type, link.linkname = tarfile.SYMTYPE, str(work)
            t.addfile(link)
            for name in ("escape/owned", "../../../../../../" + str(work.relative_to("/")) + "/dotdot"):
                data = tarfile.TarInfo(name)
                data.size = 3
                t.addfile(data, io.BytesIO(b"bad"))
        (work / "ctx").mkdir()
        (work / "ctx/evil.tar").write_bytes(buf.getvalue())
        (work / "ctx/Dockerfile").write_text("FROM busybox\nADD evil.tar /x/\nRUN ls -la /x\n")
        user.give(work)
        proc = user.pybuild("build", str(work / "ctx"), env=user_store, check=False)
        assert not (work / "owned").exists() and not (work / "dotdot").exists(), proc.stderr
        assert "Traceback" not in proc.stderr
        proc = user.pybuild("import", str(work / "ctx/evil.tar"), "evil:1", env=user_store, check=False)
        if proc.returncode == 0:  # stored; unpacked (confined) when it runs
            user.pybuild("run", "--rm", "--network", "none", "evil:1", "/bin/true", env=user_store, check=False)
        assert not (work / "owned").exists() and not (work / "dotdot").exists(), proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


@requires_tool("buildah", "umoci")
@pytest.mark.parametrize("case", ["rootless", "whiteout", "copy", "basic"])
def test_same_files_as_buildah_rootless(case: str, user: Runner, user_store: dict[str, str]) -> None:
    """`buildah bud` as the same user gives the same root filesystem (compared as the fidelity suite does)."""
    from tests.e2e.test_build_vs_buildah import BUILDAH_MOUNTPOINTS, BUILDKIT_NOT_BUILDAH, tree

    ctx = context(user.code, case)
    work = user.workdir()
    try:
        user.pybuild("save", "-o", str(work / "base.tar"), "busybox:latest", env=user_store)
        user.pybuild("save", "-o", str(work / "caps.tar"), "caps:1", env=user_store)
        user.pybuild("build", "-t", f"bh-{case}:1", "-o", f"type=tar,dest={work / 'ours.tar'}", *case_args(ctx),
                     str(ctx), env=user_store)
        b = ["buildah", "--root", str(work / "bh-root"), "--runroot", str(work / "bh-run"), "--storage-driver", "vfs"]
        benv = {"XDG_RUNTIME_DIR": str(work / "xdg")}
        user.run("mkdir", "-m", "700", str(work / "xdg"))
        for base in ("base", "caps"):
            user.run(*b, "pull", "-q", f"docker-archive:{work / base}.tar", env=benv)
        user.run(*b, "bud", "--runtime", "runc", "--format", "docker", "--layers=false", "-q", "-t", f"bh-{case}:1",
                 *case_args(ctx), str(ctx), env=benv)
        user.run(*b, "push", "-q", f"bh-{case}:1", f"oci:{work / 'layout'}:x", env=benv)
        # unpacked by root (umoci) and by tar, so both trees carry the in-image owners
        (work / "ours").mkdir()
        subprocess.run(["tar", "-xpf", str(work / "ours.tar"), "-C", str(work / "ours"), "--numeric-owner",
                        "--xattrs", "--xattrs-include=*"], check=True)
        subprocess.run(["umoci", "raw", "unpack", "--image", f"{work / 'layout'}:x", str(work / "theirs")],
                       check=True, capture_output=True)
        mine, other = tree(work / "ours"), tree(work / "theirs")
        for p in BUILDAH_MOUNTPOINTS - set(mine):
            other.pop(p, None)
        assert set(mine) == set(other), (sorted(set(mine) - set(other)), sorted(set(other) - set(mine)))
        for (c, path), field in BUILDKIT_NOT_BUILDAH.items():
            if c == case:
                mine.pop(path), other.pop(path)
        assert {p: (v, other[p]) for p, v in mine.items() if v != other[p]} == {}
    finally:
        subprocess.run(["rm", "-rf", str(work)])


def test_a_base_with_device_nodes_builds_rootless(user: Runner, user_store: dict[str, str], root_store: dict[str, str],
                                                  busybox_tar: Path) -> None:
    """A base image's device nodes (debootstrap's tarball has /dev/null and others) cannot be made in a
    user namespace: they are skipped, as Docker and containers/storage skip them (a container's /dev is
    its own mount; one elsewhere is named in a warning). Its RUN steps give the root build's layers."""
    work = user.workdir()
    try:
        tar, ctx = work / "devs.tar", work / "ctx"
        with tarfile.open(busybox_tar) as src, tarfile.open(tar, "w") as out:
            for m in src.getmembers():
                out.addfile(m, src.extractfile(m) if m.isreg() else None)
            for name, minor in (("dev/null", 3), ("dev/zero", 5), ("opt/zero", 5)):
                info = tarfile.TarInfo(name)
                info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 1, minor, 0o666
                out.addfile(info)
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM devs:1\nRUN echo ran > /ran && mkdir /opt/more\n")
        user.give(work)
        env = {**user_store, **EPOCH}
        user.pybuild("import", str(tar), "devs:1", env=env)
        built = user.pybuild("build", "-t", "devs:2", str(ctx), env=env)
        assert "skipping device node /opt/zero" in built.stderr and "/dev/null" not in built.stderr, built.stderr
        pybuild("import", str(tar), "devs:1", env=root_store)
        pybuild("build", "-t", "devs:2", str(ctx), env=root_store)
        assert (diff_ids(user.pybuild("inspect", "devs:2", env=env).stdout)
                == diff_ids(pybuild("inspect", "devs:2", env=root_store).stdout))
    finally:
        shutil.rmtree(work, ignore_errors=True)
