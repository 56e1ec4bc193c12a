"""`runtime.cgroups` decisions that this v1/hybrid host cannot show on a real v2 tree with
controllers (its unified hierarchy has none): a directory laid out as a cgroup2 root stands in,
its `cgroup.subtree_control` refusing writes as a cgroup namespace root with processes does.
The real v2 paths run in test_cgroups_v2.py, the real v1 ones in test_executor.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import cgroups
from runtime.errors import CgroupError
from runtime.spec import Limits


def _refusing_v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "cgroup.subtree_control").mkdir()  # any write fails, as EBUSY would
    return root


def test_v2_controllers_refused_still_run_a_container_without_limits(tmp_path: Path) -> None:
    root = _refusing_v2_root(tmp_path)
    cg = cgroups.Cgroup.create("a" * 64, Limits(), root)
    assert cg.version == 2 and cg.dirs[""].is_dir()
    cg.remove()
    assert not cg.dirs[""].exists()


def test_v2_limit_without_its_controller_is_a_clear_error(tmp_path: Path) -> None:
    root = _refusing_v2_root(tmp_path)
    with pytest.raises(CgroupError, match="the memory controller is not available"):
        cgroups.Cgroup.create("b" * 64, Limits(memory_bytes=64 << 20), root)
    assert [p for p in (root / cgroups.PARENT).iterdir() if p.is_dir()] == []  # no cgroup left behind


def test_unwritable_hierarchy_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("")
    (root / cgroups.PARENT).write_text("")  # a file where the parent cgroup should go
    with pytest.raises(CgroupError, match="cannot create the cgroup"):
        cgroups.Cgroup.create("c" * 64, Limits(), root)
