"""LinuxExecutor against real namespaces, overlayfs and cgroups, on the busybox rootfs."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from runtime import cgroups
from runtime.errors import SandboxError
from runtime.spec import Limits, Mount, NetworkMode
from tests.conftest import requires_root

pytestmark = requires_root

DOCKER_CAPS = 0x00000000A80425FB


def _status_field(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))


def test_exit_code_and_separate_streams(run_in) -> None:
    r = run_in("sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.code, r.status.signal, r.out, r.err) == (3, None, "out\n", "err\n")


def test_signal_death_is_128_plus_n(run_in) -> None:
    r = run_in("sh", "-c", "kill -9 $$")
    assert (r.code, r.status.signal) == (137, 9)


def test_missing_executable_is_127(run_in) -> None:
    r = run_in("no-such-binary")
    assert r.code == 127 and "executable file not found" in r.err


def test_an_image_without_passwd_runs_as_root(run_in, busybox_dir: Path, tmp_path: Path) -> None:
    no_passwd = tmp_path / "no-passwd"
    (no_passwd / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        os.mknod(no_passwd / "etc" / name, stat.S_IFCHR, 0)  # whiteouts
    r = run_in("sh", "-c", "id -u; id -g; echo $HOME; test -e /etc/passwd || echo gone", lower=(busybox_dir, no_passwd))
    assert (r.code, r.out.split()) == (0, ["0", "0", "/", "gone"]), r.err
    r = run_in("id", "-G", user=":5", lower=(busybox_dir, no_passwd))
    assert r.out.split() == ["5"], r.err
    with pytest.raises(SandboxError, match="^unable to find user root: no matching entries in passwd file$"):
        run_in("true", user="root", lower=(busybox_dir, no_passwd))  # a name needs an entry, as in Docker


def test_pid_namespace_init_is_pid_1_and_process_is_its_child(run_in) -> None:
    r = run_in("sh", "-c", "echo $$ $PPID; ls /proc | grep -c '^[0-9]'")
    pid, ppid, nprocs = r.out.split()
    assert (pid, ppid) == ("2", "1")
    assert int(nprocs) in (3, 4)  # init, sh, ls (grep, if forked yet): nothing of the host
    init = run_in("sh", "-c", "cat /proc/1/cmdline; echo; cat /proc/1/comm").out
    assert init == "pybuild-init\0\npybuild-init\n"  # not the command line pybuild was started with


def test_nice_lowers_the_whole_containers_priority(run_in) -> None:
    # field 19 of /proc/PID/stat is the niceness: the init (pid 1) and the process's own child have it too
    script = "cut -d' ' -f19 /proc/1/stat; cut -d' ' -f19 /proc/$$/stat; sh -c 'cut -d\" \" -f19 /proc/$$/stat'"
    r = run_in("sh", "-c", script, nice=7)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert r.out.split() == [str(min(mine + 7, 19))] * 3, r.err
    assert run_in("sh", "-c", "cut -d' ' -f19 /proc/$$/stat").out.split() == [str(mine)]


def test_umask_is_0022_whatever_the_callers(run_in, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    old = os.umask(0o077)  # the caller's umask makes the upper dir (and our scratch files) 0700/0600
    try:
        r = run_in("sh", "-c", "umask; touch /f; stat -c %a /f /new/dir", cwd="/new/dir")
        user = run_in("sh", "-c", "stat -c %a / /etc/hosts /etc/resolv.conf /not-in-image; cat /etc/hostname",
                      user="nobody", mounts=(Mount("/not-in-image/mnt", str(shared)),), hostname="h1")
    finally:
        os.umask(old)
    assert r.out.split() == ["0022", "644", "755"], r.err
    assert stat.S_IMODE(os.stat(r.upper / "f").st_mode) == 0o644  # what the layer records
    assert (user.code, user.out.split()) == (0, ["755", "644", "644", "755", "h1"]), user.err  # nobody gets in


def test_init_reaps_orphaned_zombies(run_in) -> None:
    r = run_in("sh", "-c", "(sleep 0.1 &); sleep 0.6; ps -o stat,comm | grep -c '^Z' || true")
    assert r.out.strip() == "0"


def test_tty_mode_gives_the_process_a_terminal(busybox_dir: Path, tmp_path: Path) -> None:
    from runtime.executor import LinuxExecutor
    from runtime.spec import ProcessSpec, RootfsSpec

    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    out: list[bytes] = []
    script = "tty; echo $TERM; test -t 1 && echo is-a-tty; stat -c '%t,%T' /dev/console /dev/pts/0"
    status = LinuxExecutor().run(ProcessSpec(("sh", "-c", script), tty=True),
                                 RootfsSpec((busybox_dir,), tmp_path / "u", tmp_path / "w"), stdout=out.append)
    assert status.code == 0
    # the container's own devpts holds its terminal, as under runc (not one of the host's ptys)
    assert b"".join(out).replace(b"\r", b"").decode().split() == ["/dev/pts/0", "xterm", "is-a-tty", "88,0", "88,0"]


def test_stdin_is_passed_when_asked(run_in, busybox_dir: Path, tmp_path: Path) -> None:
    from runtime.executor import LinuxExecutor
    from runtime.spec import ProcessSpec, RootfsSpec

    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    r, w = os.pipe()
    os.write(w, b"piped in\n")
    os.close(w)
    out: list[bytes] = []
    LinuxExecutor().run(ProcessSpec(("cat",), stdin=True), RootfsSpec((busybox_dir,), tmp_path / "u", tmp_path / "w"),
                        stdout=out.append, stdin=r)
    os.close(r)
    assert out == [b"piped in\n"]
    assert run_in("cat").out == ""  # without stdin: /dev/null


def test_own_hostname_and_etc_files(run_in) -> None:
    r = run_in("sh", "-c", "hostname; cat /etc/hostname; grep localhost /etc/hosts; test -s /etc/resolv.conf",
               hostname="box1")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[:2] == ["box1", "box1"] and "127.0.0.1" in lines[2]
    assert run_in("cat", "/etc/hosts").out == (  # Docker's, for a container without a network
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def test_etc_files_and_mount_points_do_not_leak_into_the_upper_dir(run_in) -> None:
    r = run_in("sh", "-c", "cat /etc/hosts /etc/resolv.conf >/dev/null && ls /proc /sys /dev >/dev/null")
    assert r.code == 0, r.err
    assert list(r.upper.iterdir()) == []


def test_changes_land_in_upper_dir_with_whiteouts(run_in) -> None:
    r = run_in("sh", "-c", "echo hi > /tmp/new && rm /etc/os-release && mkdir -p /srv/a")
    assert r.code == 0, r.err
    assert (r.upper / "tmp/new").read_text() == "hi\n"
    wh = os.lstat(r.upper / "etc/os-release")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert (r.upper / "srv/a").is_dir()
    assert not (r.upper / "etc/hosts").exists()


def test_root_is_the_overlay_and_no_host_mounts_are_visible(run_in) -> None:
    r = run_in("cat", "/proc/self/mountinfo")
    targets = [line.split()[4] for line in r.out.splitlines()]
    assert targets[0] == "/" and " - overlay " in r.out.splitlines()[0]
    allowed = ("/", "/proc", "/dev", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
    for t in targets:
        assert t in allowed or t.startswith(("/proc/", "/dev/", "/sys/")), t
    assert "/work" not in targets and "/tmp" not in targets


def test_minimal_dev(run_in) -> None:
    r = run_in("sh", "-c", "ls /dev; head -c 4 /dev/urandom | wc -c; echo x > /dev/shm/f && cat /dev/shm/f")
    names = set(r.out.split()) - {"4", "x"}
    docker = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd",
              "stdin", "stdout", "stderr"}  # runc's, with /dev/core only when the kernel has /proc/kcore
    assert names == docker | ({"core"} if os.path.exists("/proc/kcore") else set()), r.err


def test_masked_and_readonly_proc_paths(run_in) -> None:
    r = run_in("sh", "-c", "wc -c < /proc/keys; ls /proc/acpi | wc -l; "
                           "echo 1 > /proc/sys/vm/drop_caches && echo wrote; touch /sys/x && echo wrote")
    assert r.out.split() == ["0", "0"]
    assert "Read-only file system" in r.err
    mounts = run_in("cat", "/proc/self/mountinfo").out.splitlines()
    for path in (p for p in ("/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq") if os.path.exists(p)):
        options = next((m.split()[5] for m in mounts if m.split()[4] == path), "")
        assert set(options.split(",")) >= {"ro", "nosuid", "nodev", "noexec"}, (path, options)  # as Docker's


def test_capabilities_and_no_new_privs(run_in) -> None:
    r = run_in("cat", "/proc/self/status")
    for field in ("CapBnd", "CapEff", "CapPrm"):
        assert int(_status_field(r.out, field), 16) == DOCKER_CAPS, field
    assert int(_status_field(r.out, "CapInh"), 16) == 0  # as Docker since CVE-2022-24769
    assert _status_field(r.out, "NoNewPrivs") == "1"
    r = run_in("cat", "/proc/self/status", user="nobody")  # a non-root user keeps only the bounding set
    assert [int(_status_field(r.out, f), 16) for f in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")] == [
        DOCKER_CAPS, 0, 0, 0, 0]


def test_cannot_mount_or_load_modules(run_in) -> None:
    r = run_in("sh", "-c", "mkdir -p /mnt/x; mount -t tmpfs none /mnt/x && echo mounted; "
                           "echo /tmp/evil > /proc/sys/kernel/modprobe && echo wrote; "
                           "grep CapBnd /proc/self/status")
    assert "mounted" not in r.out and "wrote" not in r.out
    assert "permission denied" in r.err
    cap_sys_module, cap_sys_admin = 16, 21
    bounding = int(r.out.split()[-1], 16)
    assert not bounding & (1 << cap_sys_module) and not bounding & (1 << cap_sys_admin)


def test_none_network_has_only_loopback(run_in) -> None:
    r = run_in("sh", "-c", "ls /sys/class/net; ip addr show lo")
    assert r.out.split()[0] == "lo" and "eth0" not in r.out
    assert "127.0.0.1" in r.out and "UP" in r.out


def test_host_network_sees_host_interfaces(run_in) -> None:
    before = set(os.listdir("/sys/class/net"))
    r = run_in("ls", "/sys/class/net", network=NetworkMode.HOST)
    after = set(os.listdir("/sys/class/net"))  # other tests' veths come and go meanwhile
    seen = set(r.out.split())
    passing = {name for name in seen - (before | after) if re.fullmatch(r"pb[0-9a-f]{11,12}", name)}  # a veth that
    # came and went during the run (another test's RUN step): only pybuild's own may do that
    assert before & after <= seen <= before | after | passing and len(before & after) > 1, (before, seen, after)


@pytest.mark.parametrize("user, expected", [
    ("", "0 0 0 /root"),
    ("www-data", "33 33 33 /var/www"),
    ("nobody:users", "65534 100 100 /nonexistent"),
    ("1234", "1234 0 0 /"),
    ("33:100", "33 100 100 /var/www"),
])
def test_user_resolution_through_the_images_passwd(run_in, user: str, expected: str) -> None:
    r = run_in("sh", "-c", 'echo $(id -u) $(id -g) $(id -G) $HOME', user=user)
    assert r.out.strip() == expected, r.err


def test_supplementary_groups_from_etc_group(run_in, busybox_dir: Path, tmp_path: Path) -> None:
    layer = tmp_path / "groups-layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc/group").write_text("root:x:0:\nwww-data:x:33:\nstaff:x:50:other,www-data\n")
    r = run_in("id", "-G", user="www-data", lower=(busybox_dir, layer))
    assert r.out.split() == ["33", "50"]


def test_unknown_user_is_a_clear_error(run_in) -> None:
    with pytest.raises(SandboxError, match="unable to find user nosuchuser"):
        run_in("true", user="nosuchuser")


def test_workdir_is_created_when_missing(run_in) -> None:
    r = run_in("pwd", cwd="/app/src")
    assert r.out == "/app/src\n" and (r.upper / "app/src").is_dir()


def test_env_path_home_and_hostname_defaults(run_in) -> None:
    r = run_in("env", env={"FOO": "bar"})
    env = dict(line.split("=", 1) for line in r.out.splitlines())
    assert env["FOO"] == "bar" and env["HOME"] == "/root"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert len(env["HOSTNAME"]) == 12


def test_bind_and_tmpfs_mounts(run_in, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from host\n")
    r = run_in("sh", "-c", "cat /data/in; echo back > /data/out; echo t > /scratch/t; cat /scratch/t; "
                           "echo no > /ro/x",
               mounts=(Mount("/data", str(shared)), Mount("/scratch", type="tmpfs"),
                       Mount("/ro", str(shared), readonly=True)))
    assert r.out == "from host\nt\n"
    assert (shared / "out").read_text() == "back\n" and not (shared / "x").exists()
    assert "Read-only file system" in r.err
    assert list(r.upper.iterdir()) == []  # mount points live in the scaffold, not the layer


def test_readonly_root(run_in) -> None:
    r = run_in("sh", "-c", "touch /x; grep ' / / ' /proc/self/mountinfo; pwd", readonly=True, cwd="/new/wd")
    assert "Read-only file system" in r.err
    assert {"ro", "nodev"} <= set(r.out.split()[5].split(",")), r.out  # still nodev (see docs/runtime.md, Devices)
    assert r.out.split()[-1] == "/new/wd"  # a missing working directory is still made, as Docker does


def test_more_lower_dirs_than_one_mount_takes(run_in, busybox_dir: Path, tmp_path: Path) -> None:
    long = tmp_path / ("d" * 200)
    layers = []
    for i in range(520):
        layer = long / f"layer-{i:04d}-{'x' * 40}"
        (layer / "files").mkdir(parents=True)
        (layer / "files" / f"f{i}").write_text(str(i))
        (layer / "files" / "top").write_text(str(i))
        layers.append(layer)
    r = run_in("sh", "-c", "ls /files | wc -l; echo $(cat /files/top) $(cat /files/f0)", lower=(busybox_dir, *layers))
    assert r.code == 0, r.err
    assert r.out.split() == ["521", "519", "0"]


def test_pids_limit_stops_a_fork_bomb(run_in) -> None:
    script = "for i in " + " ".join(map(str, range(40))) + "; do sleep 1 & done; wait; echo survived"
    r = run_in("sh", "-c", script, limits=Limits(pids=10))
    assert r.code != 0 and "can't fork" in r.err and "survived" not in r.out
    assert run_in("sh", "-c", script).out == "survived\n"  # the same script, unlimited


def test_memory_limit_and_peaks_are_recorded(run_in) -> None:
    r = run_in("sh", "-c", "x=$(head -c 30000000 /dev/zero | tr '\\0' a); echo ${#x}",
               limits=Limits(memory_bytes=16 * 1024 * 1024))
    assert r.code == 137 and r.status.signal == 9
    ok = run_in("sh", "-c", "x=$(head -c 3000000 /dev/zero | tr '\\0' a); echo ${#x}")
    assert ok.out.strip() == "3000000"
    assert ok.status.memory_peak_bytes > 3_000_000 and ok.status.cpu_seconds > 0


def test_limits_are_written_as_docker_writes_them() -> None:
    from runtime.executor import new_id

    cg = cgroups.Cgroup.create(new_id(), Limits(memory_bytes=64 << 20, cpus=0.5, pids=50))
    try:
        if cg.version == 2:
            d = cg.dirs[""]
            files = {"memory.max": "67108864", "memory.swap.max": "67108864", "cpu.max": "50000 100000",
                     "pids.max": "50"}
        else:
            files = {"memory/memory.limit_in_bytes": "67108864", "memory/memory.memsw.limit_in_bytes": "134217728",
                     "cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000", "pids/pids.max": "50"}
            d = cgroups.CGROUP_ROOT
        for name, value in files.items():
            path = d / (name if cg.version == 2 else name.replace("/", f"/{cgroups.PARENT}/{cg.name}/", 1))
            if "swap" in name or "memsw" in name:  # only with swap accounting
                if not path.exists():
                    continue
            assert path.read_text().strip() == value, path
    finally:
        cg.remove()


@pytest.mark.skipif(cgroups.version() != 1, reason="the v1/hybrid layout (v2: test_cgroups_v2.py)")
def test_v1_container_sees_its_own_cgroups_read_only(run_in) -> None:
    r = run_in("sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
                           "grep -E ':(memory|pids):' /proc/self/cgroup; ls /sys/fs/cgroup; "
                           "echo 1 > /sys/fs/cgroup/memory/cgroup.procs || echo refused",
               limits=Limits(memory_bytes=64 << 20, pids=50))
    words = r.out.split()
    assert words[:2] == ["67108864", "50"] and words[-3:] == ["memory", "pids", "refused"], r.out
    assert sorted(w.split(":", 1)[1] for w in words[2:-3]) == ["memory:/", "pids:/"], r.out  # its own roots
    assert "Read-only file system" in r.err


def test_cpu_limit_throttles_a_busy_loop(run_in) -> None:
    r = run_in("timeout", "1", "sh", "-c", "while :; do :; done", limits=Limits(cpus=0.25))
    assert r.code == 143 and 0.05 < r.status.cpu_seconds < 0.45  # ~0.25 s of CPU in 1 s of wall time


def test_nothing_leaks_on_the_host(run_in, tmp_path: Path) -> None:
    from runtime.executor import _default_run_dir

    ours = (str(_default_run_dir()), str(tmp_path), "pybuild")  # other engineers' daemons mount and unmount meanwhile

    def snapshot() -> tuple[list[str], list[str]]:  # (no network: the veth checks are in test_network.py)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        v = cgroups.version()
        base = cgroups.CGROUP_ROOT / ("" if v == 2 else "memory") / cgroups.PARENT
        mine = sorted(p.name for p in base.glob(f"{os.getpid()}-*")) if base.exists() else []
        return [m for m in mounts if any(o in m for o in ours)], mine

    before = snapshot()
    run_in("true")
    run_in("sh", "-c", "exit 1")
    with pytest.raises(SandboxError):
        run_in("true", user="nosuchuser")
    assert snapshot() == before


def test_device_nodes_made_with_cap_mknod_cannot_be_opened(run_in) -> None:
    disk = os.stat("/").st_dev
    major, minor = os.major(disk), os.minor(disk)
    r = run_in("sh", "-c", f"mknod /tmp/disk b {major} {minor} && head -c 512 /tmp/disk | wc -c; "
                           f"mknod /dev/disk b {major} {minor} && echo made-in-dev; echo 1 > /dev/null && echo null-ok")
    assert "made-in-dev" not in r.out and "null-ok" in r.out
    assert r.out.split()[0] == "0" and "Permission denied" in r.err  # made in /tmp, but unusable (nodev)


def test_mount_targets_resolve_symlinks_inside_the_root(run_in, busybox_dir: Path, tmp_path: Path) -> None:
    layer = tmp_path / "symlink-layer"
    (layer / "srv").mkdir(parents=True)
    os.symlink("/srv/real", layer / "data")  # /data -> /srv/real inside the image
    (layer / "srv/real").mkdir()
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("vol")
    r = run_in("sh", "-c", "cat /srv/real/f; cat /data/f", lower=(busybox_dir, layer), mounts=(Mount("/data", str(vol)),))
    assert r.out == "volvol", r.err


@pytest.mark.parametrize("path, expected", [
    ("/data", "srv/real"), ("/up/x", "x"), ("/abs/y", "etc/y"), ("/srv/../../../etc", "etc"), ("/loop1", None),
])
def test_resolve_in_root_never_leaves_the_root(tmp_path: Path, path: str, expected: str | None) -> None:
    from runtime.rootfs import resolve_in_root

    root = tmp_path / "root"
    (root / "srv/real").mkdir(parents=True)
    os.symlink("/srv/real", root / "data")
    os.symlink("../../../../..", root / "up")
    os.symlink("/../../etc", root / "abs")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    if expected is None:
        with pytest.raises(OSError, match="symbolic links"):
            resolve_in_root(str(root), path)
    else:
        assert resolve_in_root(str(root), path) == f"{root}/{expected}"


def test_interrupt_kills_the_container_and_cleans_up(busybox_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C in the caller (KeyboardInterrupt while waiting) leaves no process, cgroup or run dir."""
    import signal as sig

    from runtime.executor import LinuxExecutor
    from runtime.spec import ProcessSpec, RootfsSpec

    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    executor = LinuxExecutor()
    pids: list[int] = []

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    def started(pid: int) -> None:  # interrupt once it runs, however long a loaded machine takes to start it
        pids.append(pid)
        sig.setitimer(sig.ITIMER_REAL, 0.2)

    previous = sig.signal(sig.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.run(ProcessSpec(("sleep", "30")), RootfsSpec((busybox_dir,), tmp_path / "u", tmp_path / "w"),
                         on_start=started)
    finally:
        sig.setitimer(sig.ITIMER_REAL, 0)
        sig.signal(sig.SIGALRM, previous)
    from runtime._linux import pid_alive

    assert pids and not pid_alive(pids[0])
    assert not any(p.name.startswith(f"{os.getpid()}-") for p in executor.run_dir.iterdir())
    v = cgroups.version()
    base = cgroups.CGROUP_ROOT / ("" if v == 2 else "memory") / cgroups.PARENT
    assert not list(base.glob(f"{os.getpid()}-*"))


def test_empty_command_is_refused(run_in) -> None:
    with pytest.raises(SandboxError, match="no command to run"):
        run_in()
