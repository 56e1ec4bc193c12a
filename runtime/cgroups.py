"""One cgroup per container: limits, peak usage, kill and removal, on cgroup v2 or the v1/hybrid
layout (v1 controllers under /sys/fs/cgroup/<controller>), whichever this machine runs.

Cgroups are named `pybuild/<owner pid>-<container id>`, so a later process can tell a stale one
(its owner is dead) from one in use: see `sweep()`.

Every function takes the hierarchy's mount point (`root`, default /sys/fs/cgroup) and finds out
which version is mounted there; a v1/hybrid host can thus also drive a cgroup2 mount such as
/sys/fs/cgroup/unified (which has no controllers on such a host: they are bound to v1).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from runtime import _linux
from runtime.errors import CgroupError
from runtime.spec import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "pybuild"
V1_ALWAYS = ("memory",)  # for the memory peak; CPU time comes from the reaped processes' rusage
CPU_PERIOD_US = 100_000


def version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified hierarchy, 1 on the v1/hybrid layout, 0 when no usable cgroupfs is mounted."""
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / "memory" / "cgroup.procs").exists():
        return 1
    return 0


def _write(path: Path, value: str) -> None:
    if not path.exists():  # the controller is not enabled there (on v2: not in the parent's subtree_control)
        controller = path.name.split(".", 1)[0]
        raise CgroupError(f"cannot set {path.name}: the {controller} controller is not available in {path.parent}",
                          hint=f"enable the {controller} controller for this cgroup hierarchy, or drop the limit")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class Cgroup:
    """A container's cgroup (one directory per v1 controller, or one v2 directory)."""

    def __init__(self, name: str, ver: int, controllers: tuple[str, ...] = V1_ALWAYS,
                 root: Path = CGROUP_ROOT) -> None:
        self.name, self.version = name, ver
        if ver == 2:
            self.dirs = {"": root / PARENT / name}
        else:  # joining a v1 hierarchy is slow (an RCU sync each): only the ones needed
            self.dirs = {c: root / c / PARENT / name for c in controllers}

    @classmethod
    def create(cls, container_id: str, limits: Limits, root: Path = CGROUP_ROOT) -> "Cgroup":
        ver = version(root)
        if ver == 0:
            raise CgroupError(f"no cgroup filesystem is mounted under {root}")
        controllers = V1_ALWAYS + (("cpu",) if limits.cpus is not None else ()) + (
            ("pids",) if limits.pids is not None else ())
        cg = cls(f"{os.getpid()}-{container_id[:12]}", ver, controllers, root)
        try:
            if ver == 2:
                _enable_v2_controllers(root)
            for d in cg.dirs.values():
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CgroupError(f"cannot create the cgroup {cg.name} under {root}: {exc.strerror}",
                              hint="pybuild needs a writable cgroup hierarchy (run it as root on the host, "
                                   "or in a container with a writable /sys/fs/cgroup)") from None
        try:
            cg._limit(limits)
        except CgroupError:
            cg.remove()
            raise
        return cg

    def _limit(self, limits: Limits) -> None:
        if self.version == 2:
            d = self.dirs[""]
            if limits.memory_bytes is not None:
                _write(d / "memory.max", str(limits.memory_bytes))
                if (d / "memory.swap.max").exists():  # as much swap again as memory, as Docker allows
                    _write(d / "memory.swap.max", str(limits.memory_bytes))
            if limits.cpus is not None:
                _write(d / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
            if limits.pids is not None:
                _write(d / "pids.max", str(limits.pids))
            return
        if limits.memory_bytes is not None:
            _write(self.dirs["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
            if (self.dirs["memory"] / "memory.memsw.limit_in_bytes").exists():  # memory + swap: twice
                _write(self.dirs["memory"] / "memory.memsw.limit_in_bytes", str(2 * limits.memory_bytes))
        if limits.cpus is not None:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
        if limits.pids is not None:
            _write(self.dirs["pids"] / "pids.max", str(limits.pids))

    def open_procs(self) -> list[int]:
        """Open `cgroup.procs` of each directory for writing: writing a pid there moves that process
        (and what it forks later) into the cgroup."""
        try:
            return [os.open(d / "cgroup.procs", os.O_WRONLY) for d in self.dirs.values()]
        except OSError as exc:
            raise CgroupError(f"cannot open the cgroup {self.name}: {exc.strerror}") from None

    def pids(self) -> list[int]:
        d = next(iter(self.dirs.values()))
        return [int(p) for p in _read(d / "cgroup.procs").split()]

    def memory_peak(self) -> int:
        """The most memory the cgroup's processes used at once, in bytes (0 if unknown)."""
        if self.version == 2:
            peak = _read(self.dirs[""] / "memory.peak").strip()
        else:
            peak = _read(self.dirs["memory"] / "memory.max_usage_in_bytes").strip()
        return int(peak) if peak.isdigit() else 0

    def kill(self) -> None:
        """SIGKILL every process in the cgroup."""
        kill_file = self.dirs.get("", Path("/nonexistent")) / "cgroup.kill"
        if kill_file.exists():
            kill_file.write_text("1")
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup directories (waiting up to 10 s for the killed
        processes to exit: a loaded machine can take a while to schedule them)."""
        deadline = 0.0
        while True:
            busy = False
            for d in self.dirs.values():
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise CgroupError(f"cannot remove cgroup {d}: {exc.strerror}") from None
                    busy = True
            if not busy:
                return
            if not deadline:
                self.kill()
                deadline = time.monotonic() + 10
            elif time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self.name} is still busy after killing its processes")
            time.sleep(0.01)


def procs_of(pid: int, root: Path = CGROUP_ROOT) -> list[Path]:
    """The `cgroup.procs` files of the pybuild cgroups process `pid` is in (a process written
    there joins it: what `exec` into a running container does), as /proc/PID/cgroup names them."""
    out = []
    for line in _read(Path(f"/proc/{pid}/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        if f"/{PARENT}/" not in path:
            continue
        if not controllers:  # v2, or the unified hierarchy of a hybrid host
            base = root if version(root) == 2 else root / "unified"
        else:
            base = root / controllers.replace("name=", "")
            if not base.exists():
                base = root / controllers.split(",")[0]
        procs = base / path.lstrip("/") / "cgroup.procs"
        if procs.exists():
            out.append(procs)
    return out


def _enable_v2_controllers(root: Path) -> None:
    """Delegate memory, cpu and pids to `root/pybuild`, each as far as the host allows: the root
    may refuse one (a cgroup namespace whose root holds processes, as inside another container;
    cpu with realtime tasks about). A limit that needs a controller left out is a clear error
    later (`_write`); a container without limits runs anyway."""
    parent = root / PARENT
    parent.mkdir(exist_ok=True)
    available = _read(root / "cgroup.controllers").split()
    for d in (root, parent):
        enabled = _read(d / "cgroup.subtree_control").split()
        for c in ("memory", "cpu", "pids"):
            if c in available and c not in enabled:
                try:
                    with open(d / "cgroup.subtree_control", "w") as f:
                        f.write(f"+{c}")
                except OSError:
                    pass


def sweep(root: Path = CGROUP_ROOT) -> list[str]:
    """Kill and remove cgroups whose owning pybuild process is gone; return their names."""
    ver = version(root)
    if ver == 0:
        return []
    base = root / PARENT if ver == 2 else root / "memory" / PARENT
    removed = []
    try:
        names = [p.name for p in base.iterdir() if p.is_dir()]
    except OSError:
        return []
    for name in names:
        owner = name.split("-", 1)[0]
        if owner.isdigit() and not _linux.pid_alive(int(owner)):
            Cgroup(name, ver, ("memory", "cpu", "pids"), root).remove()
            removed.append(name)
    return removed
