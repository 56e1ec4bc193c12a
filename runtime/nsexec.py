"""Run one more process in a running container (`docker exec`): in the namespaces, root and
cgroups of the container's init, with the process's own user, environment, working directory,
capabilities and seccomp filter, as the container's main process gets them.

    caller                       pumps output (and stdin to a terminal), waits for X
     `- X  fork                  joins the init's cgroups, then setns into its cgroup, ipc, uts,
         |                       net, pid and mount namespaces, chroots into its root, opens a
         |                       terminal of the container's devpts (tty), forks Y, waits for it
         `- Y  fork              in the container's pid namespace: stdio, session, privileges, exec

X dies with the caller's thread (PR_SET_PDEATHSIG); Y dies with the container (its pid namespace).
Knows nothing about images: the caller gives the init's host pid and the whole ProcessSpec.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path
from typing import Callable

from runtime import _linux, cgroups
from runtime.errors import SandboxError
from runtime.executor import (Output, _close_fds_except, _default_run_dir, _die_with_parent, _exit_status, _fail,
                              _private_dir, _read, _read_all, _read_line, _Run, _seccomp_program, become,
                              process_environment, session_stdio)
from runtime.spec import ExitStatus, NetworkMode, ProcessSpec, RootfsSpec
from runtime.users import resolve_user

NAMESPACES = (("user", _linux.CLONE_NEWUSER), ("cgroup", _linux.CLONE_NEWCGROUP), ("ipc", _linux.CLONE_NEWIPC),
              ("uts", _linux.CLONE_NEWUTS), ("net", _linux.CLONE_NEWNET), ("pid", _linux.CLONE_NEWPID),
              ("mnt", _linux.CLONE_NEWNS))  # the user namespace (only when not ours: rootless) first, mounts last


def run_in(init_pid: int, process: ProcessSpec, *, stdout: Output = None, stderr: Output = None,
           stdin: int | None = None, on_start: Callable[[int], None] | None = None,
           on_terminal: Callable[[int], None] | None = None, run_dir: Path | None = None) -> ExitStatus:
    """Run `process` in the container whose init has host pid `init_pid`, to its end.

    `stdout`/`stderr`/`stdin` as `LinuxExecutor.run` takes them; `on_start(pid)` gets the
    process's host pid; `on_terminal(master)` the master of its terminal (`process.tty`), e.g. to
    resize it, valid until this returns. Raises SandboxError when the container is not running or
    the process cannot be set up or its program run (`exec: "x": executable file not found in $PATH`)."""
    if os.geteuid() != 0:
        raise SandboxError("running a process in a container needs root")
    if not process.argv or not process.argv[0]:
        raise SandboxError("no command to run")
    fds: list[int] = []
    try:
        try:
            for name, _ in NAMESPACES:
                theirs, ours = os.stat(f"/proc/{init_pid}/ns/{name}"), os.stat(f"/proc/self/ns/{name}")
                same = (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
                fds.append(-1 if same and name == "user" else  # setns into our own user namespace is refused
                           os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
            fds.append(os.open(f"/proc/{init_pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            procs = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cgroups.procs_of(init_pid)]
            fds += procs
        except OSError as exc:
            raise SandboxError(f"the container (init pid {init_pid}) is not running: {exc.strerror}") from None
        run = _Exec(process, init_pid, fds[:len(NAMESPACES)], fds[len(NAMESPACES)], procs, stdout, stderr, stdin,
                    on_start)
        run.own_terminal = False
        run.seccomp = _seccomp_program(process, run_dir or _private_dir(_default_run_dir()))
        run.on_terminal = on_terminal
        return run.wait()
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


class _Exec(_Run):
    """The executor's stdio, terminal and output pump; its own process tree (X and Y above)."""

    def __init__(self, process: ProcessSpec, init_pid: int, ns_fds: list[int], root_fd: int, procs: list[int],
                 stdout: Output, stderr: Output, stdin: int | None, on_start: Callable[[int], None] | None) -> None:
        super().__init__(process, RootfsSpec((), Path("/"), Path("/")), (), NetworkMode.HOST, None, None, Path("/"),
                         process.hostname, stdout, stderr, stdin, on_start)
        self.init_pid, self.ns_fds, self.root_fd, self.procs = init_pid, ns_fds, root_fd, procs
        self.on_terminal: Callable[[int], None] | None = None
        self.tty_size = None  # the client sizes it (resize), not our terminal

    def wait(self) -> ExitStatus:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid_x = os.fork()
        if pid_x == 0:
            _child_x(self, parent, err_w, sync_w, status_w)
        for fd in (err_w, sync_w, status_w, *self.to_close):
            os.close(fd)
        try:
            with os.fdopen(sync_r, "rb", buffering=0) as sync:
                msg = _read_line(sync)
            error = _read_all(err_r) if not msg.startswith(b"pid ") else b""
            if error or not msg.startswith(b"pid "):
                os.waitpid(pid_x, 0)
                pid_x = 0
                raise SandboxError(error.decode(errors="replace") or "the process could not be started")
            if self.on_start:
                self.on_start(int(msg[4:]))
            if self.process.tty:
                self._receive_terminal()
                if self.on_terminal is not None and self.tty_master is not None:
                    self.on_terminal(self.tty_master)
            self._pump()
            raw = _read_all(status_r)
            _, wstatus, rusage = os.wait4(pid_x, 0)
            pid_x = 0
            self.cpu_seconds = rusage.ru_utime + rusage.ru_stime
            error = _read_all(err_r)
            if error:  # Y could not be set up (an unknown user, ...) or could not exec
                raise SandboxError(error.decode(errors="replace"))
            return _exit_status(raw, wstatus)._replace(cpu_seconds=self.cpu_seconds)
        except BaseException:
            if pid_x:
                try:
                    os.kill(pid_x, 9)
                except ProcessLookupError:
                    pass
                os.waitpid(pid_x, 0)
            raise
        finally:
            for fd in (err_r, status_r, *self.readers):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.tty_master is not None and self.tty_master not in self.readers:
                os.close(self.tty_master)


def _child_x(run: _Exec, parent: int, err_w: int, sync_w: int, status_w: int) -> None:
    p = run.process
    try:
        _die_with_parent(parent)
        _close_fds_except({0, 1, 2, err_w, sync_w, status_w, *run.child_fds, *(fd for fd in run.ns_fds if fd >= 0),
                           run.root_fd, *run.procs})
        for fd in run.procs:  # its cgroups first: the cgroup namespace is rooted there
            os.write(fd, b"%d" % os.getpid())
        for fd, (name, flag) in zip(run.ns_fds, NAMESPACES):
            if fd < 0:
                continue
            try:
                _linux.setns(fd, flag)
            except OSError as exc:
                if not (name == "cgroup" and exc.errno == 22):  # a container without a cgroup namespace
                    raise
        os.fchdir(run.root_fd)
        os.chroot(".")
        user = resolve_user(p.user)
        env = process_environment(p, p.hostname, user.home)
        cwd = p.cwd or "/"
        if not os.path.isdir(cwd):
            raise SandboxError(f"the working directory {cwd!r} does not exist in the container")
        cap_last = int(_read("/proc/sys/kernel/cap_last_cap") or 40)
        if p.tty:  # a terminal of the container's own devpts, its master to the caller
            from runtime.rootfs import _open_terminal

            master, slave, _ = _open_terminal("/dev/pts")
            socket.send_fds(socket.socket(fileno=run.child_fds[0]), [b"t"], [master])
            os.close(master)
            run.child_fds = (slave, slave, slave)
        pid_y = os.fork()
        if pid_y == 0:
            _child_y(run, err_w, env, user, cwd, cap_last)
        os.write(sync_w, b"pid %d\n" % pid_y)
        _close_fds_except({status_w, err_w})
        _, wstatus = os.waitpid(pid_y, 0)
        os.write(status_w, struct.pack("i", wstatus))
        os._exit(0)
    except SandboxError as exc:
        _fail(err_w, exc.message)
    except OSError as exc:
        _fail(err_w, f"cannot enter the container: {exc.strerror or exc}")
    except BaseException as exc:  # noqa: BLE001
        _fail(err_w, f"cannot enter the container: {exc}")


def _child_y(run: _Exec, err_w: int, env: dict[str, str], user: object, cwd: str, cap_last: int) -> None:
    p = run.process
    try:
        session_stdio(run.child_fds, p.tty, user.uid, err_w)  # type: ignore[attr-defined]
        become(p, user, cwd, cap_last, run.seccomp)
    except BaseException as exc:  # noqa: BLE001
        _fail(err_w, exc.message if isinstance(exc, SandboxError) else f"cannot start the process: {exc}")
    try:  # a program that cannot be run fails the exec itself (Docker's exit 126), not as its output
        os.execvpe(p.argv[0], list(p.argv), env)
    except FileNotFoundError:
        _fail(err_w, f'exec: "{p.argv[0]}": executable file not found in $PATH', 126)
    except OSError as exc:
        _fail(err_w, f'exec: "{p.argv[0]}": {exc.strerror}', 126)
