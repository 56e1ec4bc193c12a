"""The user namespace of rootless mode: which ids it maps, and the errors when it cannot map them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import userns
from runtime.errors import NamespaceError
from tests.rootless.conftest import Runner


def test_plan_maps_the_caller_to_root_and_its_ranges_after(tmp_path: Path) -> None:
    sub = tmp_path / "subuid"
    sub.write_text("other:100000:65536\nalice:200000:1000\n1234:500000:10\n")
    p = userns.plan("auto", uid=1234, gid=1234, name="alice", subuid=sub, subgid=sub)
    assert p.uids == (userns.IdMap(0, 1234, 1), userns.IdMap(1, 200000, 1000), userns.IdMap(1001, 500000, 10))
    assert userns.plan("single", uid=1234, gid=99, name="alice", subuid=sub, subgid=sub).gids == (userns.IdMap(0, 99, 1),)


def test_no_range_is_an_error_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    sub = tmp_path / "subuid"
    sub.write_text("other:100000:65536\n")
    with pytest.raises(NamespaceError) as err:
        userns.plan("auto", uid=1234, gid=1234, name="bob", subuid=sub, subgid=sub)
    assert str(sub) in err.value.message and "bob" in err.value.message
    assert "usermod --add-subuids" in (err.value.hint or "") and "--userns=single" in (err.value.hint or "")


def test_user_without_subids_gets_the_clear_error(nosub_user: Runner) -> None:
    proc = nosub_user.pybuild("images", check=False)
    assert proc.returncode != 0
    assert "/etc/subuid" in proc.stderr and "usermod --add-subuids" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_single_id_mode_builds_what_needs_only_root(nosub_user: Runner, busybox_tar: Path) -> None:
    work = nosub_user.workdir()
    (work / "ctx").mkdir()
    (work / "ctx/f").write_text("x\n")
    (work / "ctx/Dockerfile").write_text("FROM busybox\nRUN id -u > /uid && echo ok > /ok\nCOPY f /f\n")
    import shutil
    shutil.copy(busybox_tar, work / "busybox.tar")
    nosub_user.give(work)
    env = {"PYBUILD_ROOT": str(work / "store"), "PYBUILD_USERNS": "single"}
    nosub_user.pybuild("import", str(work / "busybox.tar"), "busybox:latest", env=env)
    nosub_user.pybuild("build", "-t", "single:1", str(work / "ctx"), env=env)
    out = nosub_user.pybuild("run", "--rm", "--network", "none", "single:1", "cat", "/uid", "/ok", env=env).stdout
    assert out.split() == ["0", "ok"]
    # a build that needs another id fails where it needs it, naming the id
    (work / "ctx/Dockerfile").write_text("FROM busybox\nRUN true\nCOPY --chown=1000:1000 f /f\n")
    proc = nosub_user.pybuild("--userns=single", "build", str(work / "ctx"), env={"PYBUILD_ROOT": str(work / "store")},
                              check=False)
    assert proc.returncode != 0 and "Dockerfile:3" in proc.stderr and "uid 1000 is not mapped" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    (work / "ctx/Dockerfile").write_text("FROM busybox\nUSER 4242\nRUN true\n")
    proc = nosub_user.pybuild("build", str(work / "ctx"), env=env, check=False)
    assert proc.returncode != 0 and "Dockerfile:3" in proc.stderr and "uid 4242 is not mapped" in proc.stderr, proc.stderr
    # a base image with a file of uid 1000: the step that needs it unpacked fails, naming the entry and the id
    import io
    import tarfile
    with tarfile.open(work / "u1000.tar", "w") as t:
        entry = tarfile.TarInfo("home/x")
        entry.size, entry.uid, entry.gid = 2, 1000, 1000
        t.addfile(entry, io.BytesIO(b"hi"))
    nosub_user.give(work)
    nosub_user.pybuild("import", str(work / "u1000.tar"), "u1000:1", env=env)
    (work / "ctx/Dockerfile").write_text("FROM u1000:1\nRUN true\n")
    proc = nosub_user.pybuild("build", str(work / "ctx"), env=env, check=False)
    assert proc.returncode == 1 and "Dockerfile:2" in proc.stderr, proc.stderr
    assert "layer entry 'home/x': rootless: uid 1000 is not mapped" in proc.stderr, proc.stderr
    shutil.rmtree(work, ignore_errors=True)
