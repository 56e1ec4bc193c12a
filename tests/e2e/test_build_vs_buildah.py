"""The fixtures/builds Dockerfiles built by pybuild and by `buildah bud` give the same image.

Configs are compared field by field (timestamps, ids and buildah's own label aside) and the root
filesystems entry by entry: path, type, permission bits, owner, size, content hash, link target.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, pybuild, requires_root, requires_tool

pytestmark = [requires_root, requires_tool("buildah", "umoci")]

CASES = ["basic", "multistage", "copy", "whiteout", "config-only"]
# Empty mount points buildah leaves in an image after RUN; BuildKit (and pybuild) leave none.
BUILDAH_MOUNTPOINTS = {"etc/hosts", "etc/resolv.conf", "run"}
# Where BuildKit (our reference) and buildah differ: (case, path) -> the field that differs.
# A directory COPY --chmod=640 makes is 0640 in BuildKit (fsutil's MkdirAll), 0755 in buildah.
BUILDKIT_NOT_BUILDAH = {("copy", "owned"): 1}
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal",
               "Healthcheck", "OnBuild", "Shell")


def run(*argv: str, **kw: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> dict[str, str]:
    """A pybuild store and a private buildah storage, both holding the same busybox:latest."""
    base = tmp_path_factory.mktemp("vs-buildah")
    env = {"PYBUILD_ROOT": str(base / "store"), "BUILDAH_ROOT": str(base / "containers"),
           "BUILDAH_RUNROOT": str(base / "run")}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    pybuild("save", "-o", str(base / "busybox.tar"), "busybox:latest", env=env)
    run(*buildah(env), "pull", "-q", f"docker-archive:{base / 'busybox.tar'}")
    return env


def buildah(env: dict[str, str]) -> list[str]:
    return ["buildah", "--root", env["BUILDAH_ROOT"], "--runroot", env["BUILDAH_RUNROOT"],
            "--storage-driver", "vfs"]


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            extra: Any = ""
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            out[rel] = (stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, extra)
    return out


@pytest.mark.parametrize("case", CASES)
def test_same_config_and_files_as_buildah(case: str, env: dict[str, str], tmp_path: Path) -> None:
    ctx = FIXTURES / "builds" / case
    expect = json.loads((ctx / "expect.json").read_text())
    args: list[str] = []
    for k, v in expect.get("build_args", {}).items():
        args += ["--build-arg", f"{k}={v}"]
    if expect.get("target"):
        args += ["--target", expect["target"]]

    pybuild("build", "-t", f"vs-{case}:1", "-o", f"type=local,dest={tmp_path / 'ours'}", "-o", "type=image",
            *args, str(ctx), env=env)
    from builder.store import Store

    ours = json.loads(Store.open(env["PYBUILD_ROOT"]).resolve(f"vs-{case}:1").raw_config())

    run(*buildah(env), "bud", "--runtime", "runc", "--format", "docker", "--layers=false", "-q",
        "-t", f"vs-{case}:1", *args, str(ctx))
    run(*buildah(env), "push", "-q", f"vs-{case}:1", f"oci:{tmp_path / 'layout'}:x")
    run("umoci", "raw", "unpack", "--image", f"{tmp_path / 'layout'}:x", str(tmp_path / "theirs"))
    theirs = json.loads(run(*buildah(env), "inspect", "-t", "image", f"vs-{case}:1"))["Docker"]

    for key in CONFIG_KEYS:
        a, b = ours["config"].get(key), theirs["config"].get(key)
        if key == "Labels":
            b = {k: v for k, v in (b or {}).items() if k != "io.buildah.version"} or None
        assert (a or None) == (b or None), f"{key}: pybuild {a!r} != buildah {b!r}"
    mine, other = tree(tmp_path / "ours"), tree(tmp_path / "theirs")
    for p in BUILDAH_MOUNTPOINTS - set(mine):
        assert other.pop(p, (0, 0, 0, 0, ""))[4] in ("", hashlib.sha256(b"").hexdigest())
    assert set(mine) == set(other), (sorted(set(mine) - set(other)), sorted(set(other) - set(mine)))
    for (c, path), field in BUILDKIT_NOT_BUILDAH.items():
        if c == case:  # differs in that field only
            a, b = mine.pop(path), other.pop(path)
            assert a[field] != b[field] and a[:field] + a[field + 1:] == b[:field] + b[field + 1:], (path, a, b)
    assert {p: v for p, v in mine.items() if v != other[p]} == {}
