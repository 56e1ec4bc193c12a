"""The cgroup v2 code path, for real: on a pure v2 host at /sys/fs/cgroup, on a v1/hybrid host at
its unified hierarchy (/sys/fs/cgroup/unified), which works the same but has no memory, cpu or
pids controller (they are bound to v1 hierarchies there), so limits cannot be exercised on it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime import _linux, cgroups
from runtime.errors import CgroupError
from runtime.executor import LinuxExecutor, new_id
from runtime.spec import Limits, ProcessSpec, RootfsSpec
from tests.conftest import requires_root


def _v2_root() -> Path | None:
    for root in (cgroups.CGROUP_ROOT, cgroups.CGROUP_ROOT / "unified"):
        if cgroups.version(root) == 2:
            return root
    return None


V2 = _v2_root()
pytestmark = [requires_root, pytest.mark.skipif(V2 is None, reason="no cgroup2 hierarchy is mounted")]


def _ours(root: Path) -> list[str]:
    base = root / cgroups.PARENT
    return sorted(p.name for p in base.iterdir() if p.name.startswith(f"{os.getpid()}-")) if base.exists() else []


def test_v2_cgroup_joins_kills_everything_and_is_removed() -> None:
    assert V2 is not None
    cg = cgroups.Cgroup.create(new_id(), Limits(), V2)
    shell = subprocess.Popen(["sh", "-c", "read go; sleep 60 & sleep 60 & echo forked; wait"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert cg.version == 2 and (cg.dirs[""] / "cgroup.kill").exists()
        for fd in cg.open_procs():
            os.write(fd, b"%d" % shell.pid)
            os.close(fd)
        assert f"0::/{cgroups.PARENT}/{cg.name}\n" in Path(f"/proc/{shell.pid}/cgroup").read_text()
        shell.stdin.write("go\n")  # type: ignore[union-attr]
        shell.stdin.flush()  # type: ignore[union-attr]
        assert shell.stdout.readline() == "forked\n"  # type: ignore[union-attr]
        pids = cg.pids()  # the shell and the two sleeps it forked once inside
        assert len(pids) == 3 and shell.pid in pids
        cg.remove()  # cgroup.kill, then rmdir
        assert shell.wait(timeout=20) == -9
        assert not any(_linux.pid_alive(p) for p in pids)
        assert not cg.dirs[""].exists()
    finally:
        shell.kill()
        shell.wait()
        cg.remove()


def test_container_in_a_v2_cgroup_sees_only_its_own_subtree(busybox_dir: Path, tmp_path: Path) -> None:
    assert V2 is not None
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    out: list[bytes] = []
    seen: list[list[str]] = []
    script = ("grep '^0::' /proc/self/cgroup; grep -x 1 /sys/fs/cgroup/cgroup.procs; "
              "mkdir /sys/fs/cgroup/x 2>/dev/null || echo read-only; sleep 0.2 & wait")
    status = LinuxExecutor(cgroup_root=V2).run(
        ProcessSpec(("sh", "-c", script)), RootfsSpec((busybox_dir,), tmp_path / "u", tmp_path / "w"),
        stdout=out.append, on_start=lambda pid: seen.append(_ours(V2)))
    assert status.code == 0, out
    assert b"".join(out).decode().split("\n") == ["0::/", "1", "read-only", ""]
    assert len(seen) == 1 and len(seen[0]) == 1  # the container's cgroup existed while it ran
    assert _ours(V2) == []  # and is gone


def test_v2_limits_are_set_when_the_controller_is_there_else_a_clear_error(busybox_dir: Path, tmp_path: Path) -> None:
    assert V2 is not None
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    out: list[bytes] = []
    run = lambda: LinuxExecutor(cgroup_root=V2).run(  # noqa: E731
        ProcessSpec(("cat", "/sys/fs/cgroup/memory.max")), RootfsSpec((busybox_dir,), tmp_path / "u", tmp_path / "w"),
        limits=Limits(memory_bytes=64 << 20), stdout=out.append)
    if "memory" in (V2 / "cgroup.controllers").read_text().split():
        status = run()
        assert (status.code, b"".join(out)) == (0, b"67108864\n")
        assert status.memory_peak_bytes > 0
    else:  # a hybrid host: memory is bound to its v1 hierarchy
        with pytest.raises(CgroupError, match="the memory controller is not available"):
            run()
    assert _ours(V2) == []
