"""Limits on a pure cgroup v2 hierarchy, as root and rootless through a delegated subtree, in a
virtual machine (fixtures/cgroup2_vm.py): this host's v1/hybrid layout binds every controller to
v1, and most users run cgroup v2.

One guest boot runs every scenario (the guest's CPUs are emulated: a pybuild command takes 10-40 s
there); each scenario's output and exit status land in the job directory and one test reads each.
The rootless user gets its delegated subtree as systemd's `Delegate=yes` makes it for user@UID.service:
the controllers enabled down to it, the subtree chowned to the user, the user's process in a leaf
below it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import baseimages  # fixtures/
import cgroup2_vm
from rootless_user import copy_code, ensure_user, venv

pytestmark = pytest.mark.skipif(cgroup2_vm.available() is not None, reason=str(cgroup2_vm.available()))

USER = "pbrootless"
ALLOC = "awk 'BEGIN{s=sprintf(\"%80000000s\",\"x\"); print length(s)}'"  # 80 MB in one string
SCRIPT = r"""
PY={py}; U={user}; UID=$(id -u $U); C=/sys/fs/cgroup
mount -t tmpfs tmpfs /var/lib/pybuild
export PYTHONPATH=/tmp/job/code HOME=/tmp LANG=C.UTF-8
step() {{ name=$1; shift; "$@" > /tmp/job/$name.out 2>&1; echo $? > /tmp/job/$name.rc; }}
pb() {{ PYBUILD_ROOT=/tmp/store $PY -m builder "$@"; }}
mkdir -p /tmp/ctx && chmod 755 /tmp/ctx && cat > /tmp/ctx/Dockerfile <<'END'
FROM busybox:latest
RUN {alloc_raw} > /n
END
chmod 644 /tmp/ctx/Dockerfile

# root: limits in the container's own cgroup under /sys/fs/cgroup/pybuild
step import pb import /tmp/job/busybox.tar busybox:latest
step detached pb run -d --name lim --network none --memory 32m --cpus 0.5 --pids-limit 20 busybox:latest sleep 600
cat $C/pybuild/*/memory.max $C/pybuild/*/cpu.max $C/pybuild/*/pids.max > /tmp/job/limits.out 2>&1
pb rm -f lim > /dev/null 2>&1
step oom pb run --rm --network none --memory 32m busybox:latest sh -c "{alloc}"
step nolimit pb run --rm --network none busybox:latest sh -c "{alloc}"
step pids pb run --rm --network none --pids-limit 8 busybox:latest sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; wait'
step build pb build --network none -t alloc /tmp/ctx
find $C/pybuild -mindepth 1 -type d > /tmp/job/leftover.out 2>&1

# rootless, delegated: as systemd makes user@UID.service for the user
S=$C/user.slice/user-$UID.slice/user@$UID.service
mkdir -p $S/app.slice/t.scope $C/user.slice/user-$UID.slice/session-1.scope
for d in $C $C/user.slice $C/user.slice/user-$UID.slice $S; do echo '+memory +pids +cpu' > $d/cgroup.subtree_control; done
chown -R $U $S
mkdir -p /tmp/rl && chown $U /tmp/rl
rl() {{ cg=$1; shift; sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$cg" x runuser -u $U -- \
    env -i HOME=/tmp/rl PATH=/usr/bin:/bin:/usr/sbin:/sbin PYTHONPATH=/tmp/job/code PYBUILD_ROOT=/tmp/rl/store \
    LANG=C.UTF-8 $PY -m builder "$@"; }}
step rl_import rl $S/app.slice/t.scope import /tmp/job/busybox.tar busybox:latest
step rl_info rl $S/app.slice/t.scope info
step rl_oom rl $S/app.slice/t.scope run --rm --network none --memory 32m busybox:latest sh -c "{alloc}"
step rl_nolimit rl $S/app.slice/t.scope run --rm --network none busybox:latest sh -c "{alloc}"
step rl_build rl $S/app.slice/t.scope build --network none -t alloc /tmp/ctx
find $S/app.slice/pybuild -mindepth 1 -type d > /tmp/job/rl_leftover.out 2>&1
# rootless in a session scope (root's, as logind leaves it): nothing is delegated
step rl_refused rl $C/user.slice/user-$UID.slice/session-1.scope run --rm --network none --memory 32m busybox:latest true
"""


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    job = tmp_path_factory.mktemp("vm")
    ensure_user(USER, subids=True)
    copy_code(job / "code", compile=True)
    baseimages.busybox_rootfs_tar(job / "busybox.tar")
    job.chmod(0o755)  # the guest's unprivileged user reads it (mounted at /tmp/job there)
    py = venv() / "bin/python"
    script = SCRIPT.format(py=shlex.quote(str(py)), user=USER, alloc=ALLOC.replace('"', '\\"'), alloc_raw=ALLOC)
    result = cgroup2_vm.run(script, job, timeout=1200)
    assert result.rc == 0, f"the guest did not finish its script:\n{result.output}\n{result.console[-3000:]}"
    return job


def outcome(job: Path, name: str) -> tuple[int, str]:
    return int((job / f"{name}.rc").read_text()), (job / f"{name}.out").read_text()


def test_root_limits_are_written_to_the_containers_v2_cgroup(guest: Path) -> None:
    assert outcome(guest, "import")[0] == 0
    rc, out = outcome(guest, "detached")
    assert rc == 0, out
    assert (guest / "limits.out").read_text().split() == [str(32 << 20), "50000", "100000", "20"]


def test_root_memory_limit_kills_the_container(guest: Path) -> None:
    rc, out = outcome(guest, "oom")
    assert rc == 137, out  # SIGKILLed by the OOM killer, as docker run reports it
    rc, out = outcome(guest, "nolimit")
    assert (rc, out.strip()) == (0, "80000000")


def test_root_pids_limit_stops_forks(guest: Path) -> None:
    rc, out = outcome(guest, "pids")
    assert "can't fork" in out, (rc, out)


def test_root_build_runs_in_v2_cgroups_and_cleans_them(guest: Path) -> None:
    rc, out = outcome(guest, "build")
    assert rc == 0, out
    assert (guest / "leftover.out").read_text().split() == []


def test_rootless_uses_the_delegated_subtree(guest: Path) -> None:
    assert outcome(guest, "rl_import")[0] == 0, outcome(guest, "rl_import")[1]
    rc, out = outcome(guest, "rl_info")
    assert rc == 0 and "user@" in out, out
    rc, out = outcome(guest, "rl_oom")
    assert rc == 137, out
    rc, out = outcome(guest, "rl_nolimit")
    assert (rc, out.strip()) == (0, "80000000")
    rc, out = outcome(guest, "rl_build")
    assert rc == 0, out
    assert (guest / "rl_leftover.out").read_text().split() == []


def test_rootless_without_delegation_refuses_limits(guest: Path) -> None:
    rc, out = outcome(guest, "rl_refused")
    assert rc == 125 and "Traceback" not in out, (rc, out)
    assert "delegated to the user: the parent of this process's cgroup is not the user's to write" in out, out
