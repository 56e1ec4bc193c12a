"""Run one more process inside a running container, as `docker exec` does: in the namespaces of the
container's init (user when it differs from ours, ipc, uts, net, pid, cgroup, mount) and cgroups,
chrooted to its root, as the process's user with the container's capabilities, no_new_privs and
seccomp.

    run_in(init_pid, process, timeout=None, limit=4096) -> Entered(code, output, timed_out)

    caller                 reads the output (stdout and stderr, one pipe), kills C on timeout
     `- A  fork            joins the cgroups (its limits count the process), the namespaces and
         |                 the root (a pid namespace holds A's children only), forks C, tells the
         |                 caller C's pid, exits as C does
         `- C  fork + exec stdio, session, user, capabilities, exec
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import NamedTuple

from runtime import _linux
from runtime.executor import DEFAULT_PATH, _default_run_dir, _process_caps, _seccomp_program
from runtime.spec import ProcessSpec
from runtime.users import resolve_user

__all__ = ["Entered", "run_in"]

NAMESPACES = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")  # the user namespace first, the mounts last


class Entered(NamedTuple):
    code: int  # the exit code (128+N on signal N); -1 when it timed out
    output: bytes  # stdout and stderr as written, cut at the limit
    timed_out: bool = False


def run_in(init_pid: int, process: ProcessSpec, timeout: float | None = None, limit: int = 4096) -> Entered:
    """Run `process` in the container whose init has host pid `init_pid`; its output is kept up
    to `limit` bytes. Raises OSError when the container is gone."""
    procs = _cgroup_procs(init_pid)
    fds = _namespace_fds(init_pid)
    root = os.open(f"/proc/{init_pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    bpf = _seccomp_program(process, _default_run_dir())
    out_r, out_w = os.pipe()
    pid_r, pid_w = os.pipe()
    try:
        a = os.fork()
        if a == 0:
            _child_a(process, procs, fds, root, out_w, pid_w, bpf)
    finally:
        for fd in (*procs, *fds, root, out_w, pid_w):
            os.close(fd)
    try:
        child = int(os.read(pid_r, 32) or b"0")  # 0: A failed before forking (its reason is in the output)
        output, timed_out = _collect(out_r, child, timeout, limit)
        _, wstatus = os.waitpid(a, 0)
    finally:
        os.close(out_r)
        os.close(pid_r)
    if timed_out:
        return Entered(-1, output, True)
    code = os.waitstatus_to_exitcode(wstatus)
    return Entered(code if code >= 0 else 128 - code, output)


def _namespace_fds(init_pid: int) -> list[int]:
    """Open the init's namespaces that are not already ours, in joining order."""
    fds = []
    try:
        for ns in NAMESPACES:
            theirs, ours = os.stat(f"/proc/{init_pid}/ns/{ns}"), os.stat(f"/proc/self/ns/{ns}")
            if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
                fds.append(os.open(f"/proc/{init_pid}/ns/{ns}", os.O_RDONLY))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _cgroup_procs(init_pid: int) -> list[int]:
    """`cgroup.procs` of each of the init's cgroups that pybuild made (`.../pybuild/...`), opened
    for writing; none when they cannot be (no cgroups: the process then runs in ours)."""
    from runtime import cgroups

    fds = []
    try:
        lines = open(f"/proc/{init_pid}/cgroup").read().splitlines()
    except OSError:
        return []
    v2_root = cgroups.CGROUP_ROOT if cgroups.version(cgroups.CGROUP_ROOT) == 2 else cgroups.CGROUP_ROOT / "unified"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if f"/{cgroups.PARENT}/" not in path + "/":
            continue
        base = v2_root if not controllers else cgroups.CGROUP_ROOT / controllers.removeprefix("name=")
        try:
            fds.append(os.open(f"{base}{path}/cgroup.procs", os.O_WRONLY))
        except OSError:
            continue
    return fds


def _collect(out_r: int, child: int, timeout: float | None, limit: int) -> tuple[bytes, bool]:
    """Read the output until EOF; on timeout kill the process (and whatever holds the pipe)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    kept = bytearray()
    truncated = False
    while True:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0)
        ready, _, _ = select.select([out_r], [], [], wait)
        if not ready:
            if child:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return bytes(kept), True
        data = os.read(out_r, 65536)
        if not data:
            return bytes(kept) + (b"..." if truncated else b""), False
        room = limit - len(kept)
        kept += data[:room]
        truncated = truncated or len(data) > room


def _child_a(process: ProcessSpec, procs: list[int], fds: list[int], root: int, out_w: int, pid_w: int,
             bpf: bytes) -> None:
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for fd in procs:  # "0": the writer itself, before its cgroup namespace is the container's
            os.write(fd, b"0")
        for fd in fds:
            _linux.setns(fd)
        os.fchdir(root)
        os.chroot(".")
        child = os.fork()
        if child == 0:
            _child_c(process, out_w, bpf)
        os.write(pid_w, b"%d" % child)
        os.close(out_w)
        _, wstatus = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(wstatus) if os.WIFEXITED(wstatus) else 128 + os.WTERMSIG(wstatus))
    except BaseException as exc:  # noqa: BLE001 - reported as the process's output
        os.write(out_w, f"cannot enter the container: {exc}\n".encode())
        os._exit(126)


def _child_c(process: ProcessSpec, out_w: int, bpf: bytes) -> None:
    try:
        for sig in signal.Signals:
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.setsid()
        os.closerange(3, 1 << 16)
        user = resolve_user(process.user)
        env = dict(process.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOME", user.home)
        caps = _process_caps(process)
        cap_last = int(open("/proc/sys/kernel/cap_last_cap").read().strip() or 40)
        for cap in range(cap_last + 1):
            if cap not in caps:
                _linux.prctl(_linux.PR_CAPBSET_DROP, cap)
        _linux.capset(caps)
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
        _linux.prctl(_linux.PR_SET_NO_NEW_PRIVS, 1)
        os.chdir(process.cwd or "/")
        if bpf:
            from runtime.seccomp import load

            load(bpf)
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"cannot start the process: {getattr(exc, 'message', exc)}\n".encode())
        os._exit(126)
    try:
        os.execvpe(process.argv[0], list(process.argv), env)
    except FileNotFoundError:
        msg, code = f'exec: "{process.argv[0]}": executable file not found in $PATH', 127
    except OSError as exc:
        msg, code = f'exec: "{process.argv[0]}": {exc.strerror}', 126
    os.write(2, f"{msg}\n".encode())
    os._exit(code)
