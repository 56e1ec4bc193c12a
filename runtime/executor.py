"""Run one process in fresh namespaces on an overlay root, the way Docker runs a container.

    caller (pybuild)             makes the scaffold, cgroup and veth; pumps output; waits until
                                 A has reaped B, cleans up while A exits, then reaps A
     `- A  fork                  unshares mount/uts/ipc/pid[/net], forks B, moves B into the
         |                       cgroup while B mounts, waits for it
         `- B  fork: PID 1       mounts the root, pivots, hostname, network, its own cgroup
             |                   namespace; then the tiny init: reaps zombies, forwards signals,
             |                   exits as C exits (128+N on a signal)
             `- C  fork + exec   drops capabilities, sets no_new_privs, becomes USER, execs

A and B die with their parent (PR_SET_PDEATHSIG), so a `kill -9` of pybuild takes the whole
container down, and every mount lives in the container's own mount namespace: nothing leaks.
Call `run()` from a thread that outlives the container (the death signal follows the thread).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import stat
import struct
import termios
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, Union

from runtime import _linux, _netif, cgroups, overlay, userns
from runtime.errors import CgroupError, NamespaceError, SandboxError
from runtime.rootfs import NOSUID_NODEV_NOEXEC, build_scaffold, scaffold_dir, setup_root
from runtime.spec import ExitStatus, Limits, Mount, NetworkMode, PortMapping, ProcessSpec, RootfsSpec
from runtime.users import resolve_user

if TYPE_CHECKING:
    from runtime.network import Bridge
    from runtime.rootless_net import Slirp

Output = Union[int, Callable[[bytes], None], None]
"""Where a stream goes: a file descriptor, a callback taking each chunk, or None (inherit ours)."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31})
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)
MAX_FD = 1 << 20


def _default_run_dir() -> Path:
    """$PYBUILD_RUN_DIR, else /run/pybuild when /run is a tmpfs, else /dev/shm/pybuild: scratch
    that is removed after every container is much cheaper to remove from a tmpfs."""
    if "PYBUILD_RUN_DIR" in os.environ:
        return Path(os.environ["PYBUILD_RUN_DIR"])
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4] == "/run" and fields[fields.index("-") + 1] == "tmpfs":
            return Path("/run/pybuild")
    return Path("/dev/shm/pybuild")


def _private_dir(path: Path) -> Path:
    """Create `path` 0700 for root, refusing anything else already there (e.g. a planted symlink)."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise SandboxError(f"{path} must be a directory owned by root with mode 0700",
                           hint="remove it, or set PYBUILD_RUN_DIR")
    return path


class Executor(Protocol):
    def run(self, process: ProcessSpec, rootfs: RootfsSpec, mounts: Sequence[Mount] = (),
            network: NetworkMode = NetworkMode.NONE, limits: Limits = Limits(), *,
            stdout: Output = None, stderr: Output = None) -> ExitStatus: ...


def sweep_host(run_dir: Path | None = None, cgroup_root: Path = cgroups.CGROUP_ROOT) -> None:
    """Remove run dirs, cgroups and IPAM entries whose owning process is gone."""
    from runtime import network

    run_dir = run_dir or _default_run_dir()
    if run_dir.exists():
        for p in run_dir.iterdir():
            owner = p.name.split("-", 1)[0]
            if owner.isdigit() and not _linux.pid_alive(int(owner)):
                shutil.rmtree(p, ignore_errors=True)
    if userns.in_user_namespace():  # rootless: no host cgroup or bridge of ours to clear
        return
    cgroups.sweep(cgroup_root)
    network.sweep()


def new_id() -> str:
    """A container id: 64 hex characters, shown as its first 12."""
    return os.urandom(32).hex()


class LinuxExecutor:
    """Runs processes in Linux namespaces; needs root. The first one made in a process also
    clears what killed pybuild processes left behind (run dirs, cgroups, addresses)."""

    _swept = False

    def __init__(self, run_dir: Path | None = None, use_cgroups: bool = True,
                 cgroup_root: Path = cgroups.CGROUP_ROOT) -> None:
        """`cgroup_root`: where the cgroup hierarchy to use is mounted (v1 or v2, found out there)."""
        self.run_dir = run_dir or _default_run_dir()
        self.host_cgroup_version = cgroups.version(cgroup_root)
        if userns.in_user_namespace():  # rootless: only a cgroup v2 subtree delegated to the user
            cgroup_root = userns.delegated_cgroup(cgroup_root) or Path("/nonexistent")
        self.cgroup_root = cgroup_root
        self.use_cgroups = use_cgroups and cgroups.version(cgroup_root) != 0
        if not LinuxExecutor._swept and os.geteuid() == 0:
            LinuxExecutor._swept = True
            sweep_host(self.run_dir)

    def run(self, process: ProcessSpec, rootfs: RootfsSpec, mounts: Sequence[Mount] = (),
            network: NetworkMode = NetworkMode.NONE, limits: Limits = Limits(), *,
            stdout: Output = None, stderr: Output = None, stdin: int | None = None,
            ports: Sequence[PortMapping] = (), container_id: str | None = None,
            on_start: Callable[[int], None] | None = None) -> ExitStatus:
        """Run `process` to completion and return how it ended; `rootfs.upper` keeps its changes.

        `stdin` is a file descriptor (default: ours when `process.stdin`, else /dev/null).
        `on_start(pid)` gets the host pid of the container's init as soon as it exists.
        """
        if os.geteuid() != 0:
            raise NamespaceError("running a container needs root", hint="run pybuild as root, or enter a user "
                                 "namespace first (runtime.userns.enter(), what the CLI does rootless)")
        if not process.argv or not process.argv[0]:
            raise SandboxError("no command to run")
        if not self.use_cgroups and limits != Limits() and userns.in_user_namespace():
            why = ("this host runs cgroup v1" if self.host_cgroup_version != 2 else
                   "the parent of this process's cgroup is not the user's to write (a login session's scope)")
            raise CgroupError(f"rootless: resource limits need a cgroup v2 subtree delegated to the user: {why}",
                              hint="drop --memory/--cpus/--pids-limit, run as root, or on cgroup v2 start pybuild "
                                   "in a delegated scope: systemd-run --user --scope pybuild ...")
        cid = container_id or new_id()
        started = time.monotonic()
        scratch = _private_dir(self.run_dir) / f"{os.getpid()}-{cid[:12]}-{os.urandom(2).hex()}"
        (scratch / "root").mkdir(parents=True)
        cgroup = None
        net: Bridge | Slirp | None = None
        proxy = None
        run = None
        try:
            hostname = process.hostname or cid[:12]
            if network in (NetworkMode.BRIDGE, NetworkMode.DEFAULT) and userns.in_user_namespace():  # no bridge
                from runtime.rootless_net import Slirp  # without root: slirp4netns in the container's namespace
                net = Slirp.attach(cid, ports, scratch)
            elif network in (NetworkMode.BRIDGE, NetworkMode.DEFAULT):  # a RUN's own namespace, as docker build
                from runtime import network as netmod
                bridge = netmod.Bridge.attach(cid)
                net = bridge
                if ports:
                    from runtime.proxy import PortProxy
                    proxy = PortProxy(ports, bridge.address)
            if userns.in_user_namespace():
                overlay.driver()  # probed once per process, here: the container's init inherits the answer
            _write_etc(scratch / "etc", hostname, network, net.address if net else None,
                       sandbox=process.sandbox, dns=getattr(net, "dns", None), extra_hosts=process.extra_hosts)
            _fresh_root_mode(rootfs.upper)
            build_scaffold(scaffold_dir(rootfs, scratch), rootfs, mounts, process.cwd, hostname_file=not process.sandbox)
            if self.use_cgroups:
                cgroup = cgroups.Cgroup.create(cid, limits, self.cgroup_root)
            bpf = _seccomp_program(process, self.run_dir)
            run = _Run(process, rootfs, mounts, network, cgroup, net, scratch, hostname, stdout, stderr, stdin,
                       on_start)
            run.seccomp = bpf
            status = run.wait()
            if cgroup is not None:
                status = status._replace(memory_peak_bytes=cgroup.memory_peak())
        finally:  # while the kernel tears the container's namespaces down (see _Run.reap)
            if proxy is not None:
                proxy.close()
            if cgroup is not None:
                cgroup.remove()
            if net is not None:
                net.detach()
            shutil.rmtree(scratch, ignore_errors=True)
            cpu = run.reap() if run is not None else 0.0
        return status._replace(cpu_seconds=cpu, wall_seconds=time.monotonic() - started, ports=tuple(ports))


def _seccomp_program(process: ProcessSpec, run_dir: Path) -> bytes:
    """The seccomp program for `process` (b"" when unconfined), compiled once per profile and
    capability set and kept under the run dir."""
    if process.seccomp == "unconfined":
        return b""
    from runtime import seccomp

    text = process.seccomp or seccomp.default_profile()
    return seccomp.program(text, _process_caps(process), run_dir / "seccomp",
                           "default" if not process.seccomp else "profile")


def _fresh_root_mode(upper: Path) -> None:
    """The container's `/` takes the upper dir's mode: a fresh one is 0755 (Docker's), not what
    the caller's umask made of it (0700 under umask 077 locked every non-root USER out)."""
    with os.scandir(upper) as entries:
        if next(entries, None) is None:
            os.chmod(upper, 0o755)


def _write_etc(etc: Path, hostname: str, network: NetworkMode, address: str | None, *,
               sandbox: bool = False, dns: str | None = None,
               extra_hosts: Sequence[tuple[str, str]] = ()) -> None:
    """The /etc files bound into the container; a BuildKit sandbox gets no /etc/hostname, slirp4netns
    its own resolver (`dns`); `extra_hosts` (`--add-host`) go into /etc/hosts where BuildKit (sandbox)
    or Docker's libnetwork (a container) puts them."""
    etc.mkdir()
    if not sandbox:
        (etc / "hostname").write_text(hostname + "\n")
    if sandbox:  # BuildKit's executor/oci/hosts.go, whatever the network
        hosts = f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    elif network == NetworkMode.HOST:
        hosts = _read("/etc/hosts") or "127.0.0.1\tlocalhost\n"
    else:
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")  # Docker's
    extra = "".join(f"{ip}\t{name}\n" for name, ip in extra_hosts)
    own = f"{address}\t{hostname}\n" if address else ""
    hosts += own + extra if sandbox else extra + own  # BuildKit appends them; Docker's run puts its own line last
    (etc / "hosts").write_text(hosts)
    resolv = _read("/etc/resolv.conf")
    if dns:  # slirp4netns' own forwarder
        resolv = f"nameserver {dns}\n"
    elif network in (NetworkMode.BRIDGE, NetworkMode.DEFAULT):  # the host's loopback resolvers are unreachable
        lines = [ln for ln in resolv.splitlines() if not ln.startswith("nameserver 127.")]
        if not any(ln.startswith("nameserver") for ln in lines):
            lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
        resolv = "\n".join(lines) + "\n"
    (etc / "resolv.conf").write_text(resolv)
    for name in os.listdir(etc):
        os.chmod(etc / name, 0o644)  # readable by every user, whatever our umask


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class _Run:
    """One container's process tree, from the caller's side."""

    def __init__(self, process: ProcessSpec, rootfs: RootfsSpec, mounts: Sequence[Mount], network: NetworkMode,
                 cgroup: cgroups.Cgroup | None, net: object, scratch: Path, hostname: str, stdout: Output,
                 stderr: Output, stdin: int | None, on_start: Callable[[int], None] | None) -> None:
        self.process, self.rootfs, self.mounts, self.network = process, rootfs, mounts, network
        self.cgroup, self.net, self.scratch, self.hostname = cgroup, net, scratch, hostname
        self.on_start = on_start
        self.to_close: list[int] = []
        self.readers: dict[int, Callable[[bytes], None]] = {}
        self.tty_master: int | None = None
        self.child_fds = self._stdio(stdout, stderr, stdin)
        self.pid_a = 0  # A while it exits (its namespaces are torn down after the container ended)
        self.cpu_seconds = 0.0
        self.seccomp = b""  # the BPF program C loads last before exec (none: unconfined)
        self.own_terminal = True  # a tty follows our terminal (size, raw mode); not for a server's exec

    def _stdio(self, stdout: Output, stderr: Output, stdin: int | None) -> tuple[int, int, int]:
        if self.process.tty:  # the init opens the terminal in the container's own devpts and sends us its master
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.tty_socket = ours
            self.tty_input = (0 if stdin is None else stdin) if self.process.stdin else None  # typed into it
            self.tty_size = _winsize()  # the init sizes the terminal before the process starts
            self.tty_sink = stdout if callable(stdout) else _writer(stdout if isinstance(stdout, int) else 1)
            fd = theirs.detach()
            self.to_close.append(fd)
            return fd, fd, fd
        if callable(stdout) and stderr is stdout:  # one sink for both: one pipe keeps them in the order written
            r, w = os.pipe()
            self.readers[r] = stdout
            self.to_close.append(w)
            return self._stdin(stdin), w, w
        fds = []
        for out, default in ((stdout, 1), (stderr, 2)):
            if callable(out):
                r, w = os.pipe()
                self.readers[r] = out
                self.to_close.append(w)
                fds.append(w)
            else:
                fds.append(default if out is None else out)
        return self._stdin(stdin), fds[0], fds[1]

    def _stdin(self, stdin: int | None) -> int:
        """The container's stdin: the given fd, ours when the process asks for it, else /dev/null."""
        if stdin is not None:
            return stdin
        if self.process.stdin:
            return 0
        fd = os.open("/dev/null", os.O_RDONLY)
        self.to_close.append(fd)
        return fd

    def wait(self) -> ExitStatus:
        """Start the container and wait until every process in it is gone; `reap()` after."""
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid_a = os.fork()
        if pid_a == 0:
            _child_a(self, parent, err_w, sync_w, go_r, status_w, done_w)
        for fd in (err_w, sync_w, go_r, status_w, done_w, *self.to_close):
            os.close(fd)
        init_pid = 0
        try:
            with os.fdopen(sync_r, "rb", buffering=0) as sync:
                msg = _read_line(sync)
                if msg == b"net":
                    self.net.plumb(pid_a)  # type: ignore[attr-defined]
                    os.write(go_w, b"g")
                    msg = _read_line(sync)
                if msg.startswith(b"pid "):
                    init_pid = int(msg[4:])
                    if self.on_start:
                        self.on_start(init_pid)
            os.close(go_w)
            go_w = -1
            error = _read_all(err_r)
            if error:
                os.waitpid(pid_a, 0)
                pid_a = 0
                raise SandboxError(error.decode(errors="replace"))
            if self.process.tty:
                self._receive_terminal()
            self._pump()
            _read_all(done_r)  # EOF: A has reaped the init (so the container is empty) and is exiting
            raw = _read_all(status_r)
            if len(raw) == 4:  # the init's report: A's namespaces can go down while the caller cleans up
                self.pid_a, pid_a = pid_a, 0
                return _exit_status(raw, 0)
            _, wstatus, rusage = os.wait4(pid_a, 0)
            pid_a = 0
            self.cpu_seconds = rusage.ru_utime + rusage.ru_stime
            return _exit_status(raw, wstatus)
        except BaseException:
            if pid_a:
                for pid in (init_pid, pid_a):
                    if pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                os.waitpid(pid_a, 0)
            raise
        finally:
            for fd in (err_r, status_r, done_r, go_w, *self.readers):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def _receive_terminal(self) -> None:
        """The master of the container's terminal, sized as ours (as `docker run -t`)."""
        with self.tty_socket:
            _, fds, _, _ = socket.recv_fds(self.tty_socket, 1, 1)
        if not fds:
            raise SandboxError("the container's terminal was not received")
        os.set_inheritable(fds[0], False)
        self.tty_master = fds[0]
        self.readers[fds[0]] = self.tty_sink
        if self.own_terminal:
            _copy_winsize(self.tty_master)

    def reap(self) -> float:
        """Wait for A to finish exiting; the CPU seconds of every process of the container (A's
        rusage includes all it reaped)."""
        if self.pid_a:
            _, _, rusage = os.wait4(self.pid_a, 0)
            self.pid_a = 0
            self.cpu_seconds = rusage.ru_utime + rusage.ru_stime
        return self.cpu_seconds

    def _pump(self) -> None:
        """Copy the container's output to the callbacks (and our stdin to a tty) until EOF."""
        if not self.readers:
            return
        import selectors  # only when output is captured (not for `pybuild run` in a terminal)

        sel = selectors.DefaultSelector()
        for fd in self.readers:
            sel.register(fd, selectors.EVENT_READ)
        typed = self.tty_input if self.tty_master is not None else None
        if typed is not None:
            try:
                sel.register(typed, selectors.EVENT_READ)
            except OSError:  # /dev/null or a regular file cannot be polled: nothing will be typed
                typed = None
        ours = self.tty_master if self.own_terminal else None
        with _raw_terminal(ours is not None), _follow_winsize(ours):
            open_fds = set(self.readers)
            while open_fds:
                for key, _ in sel.select():
                    fd = key.fd
                    if fd == typed:
                        data = os.read(fd, 65536)
                        if data:
                            os.write(self.tty_master, data)  # type: ignore[arg-type]
                        else:
                            sel.unregister(fd)
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: the tty's last writer is gone
                        data = b""
                    if data:
                        self.readers[fd](data)
                    else:
                        sel.unregister(fd)
                        open_fds.discard(fd)
        sel.close()


class _raw_terminal:
    def __init__(self, active: bool) -> None:
        self.active = active and os.isatty(0)
        self.saved: list | None = None

    def __enter__(self) -> None:
        if self.active:
            import tty
            self.saved = termios.tcgetattr(0)
            tty.setraw(0)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)


def _winsize() -> bytes | None:
    """The size of our terminal (stdout's, else stdin's), None without one."""
    for fd in (1, 0):
        try:
            return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
    return None


def _copy_winsize(master: int) -> None:
    """Give the container's terminal the size of ours, if we have one (the kernel then sends the
    container SIGWINCH when it changed)."""
    size = _winsize()
    if size is not None:
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


class _follow_winsize:
    """While the container runs, pass our terminal's size changes (SIGWINCH) on to its terminal;
    only possible from the main thread, where signal handlers live."""

    def __init__(self, master: int | None) -> None:
        self.master = master
        self.previous: object = None

    def __enter__(self) -> None:
        if self.master is not None:
            try:
                self.previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(self.master))  # type: ignore[arg-type]
            except ValueError:  # not the main thread
                self.master = None

    def __exit__(self, *exc: object) -> None:
        if self.master is not None:
            signal.signal(signal.SIGWINCH, self.previous)  # type: ignore[arg-type]


def _writer(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        while data:
            data = data[os.write(fd, data):]
    return write


def _read_line(f: object) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        ch = f.read(1)  # type: ignore[attr-defined]
        if not ch:
            break
        line += ch
    return line.strip()


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _exit_status(raw: bytes, wstatus_a: int) -> ExitStatus:
    """The exit of C as its init reported it; A's own exit code when the init could not report."""
    if len(raw) == 4:
        wstatus = struct.unpack("i", raw)[0]
        if os.WIFSIGNALED(wstatus):
            sig = os.WTERMSIG(wstatus)
            return ExitStatus(128 + sig, signal=sig)
        return ExitStatus(os.WEXITSTATUS(wstatus))
    if os.WIFSIGNALED(wstatus_a):  # the init itself was killed (SIGKILL from stop/kill)
        sig = os.WTERMSIG(wstatus_a)
        return ExitStatus(128 + sig, signal=sig)
    code = os.waitstatus_to_exitcode(wstatus_a)
    return ExitStatus(code, signal=code - 128 if code > 128 else None)


# ---- the container side: everything below runs in forked children and ends in os._exit ----

def _die_with_parent(parent: int) -> None:
    _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(137)


def _close_fds_except(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if low < fd:  # closerange(n, n) would close everything up
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, MAX_FD)


def _fail(err_w: int, message: str, code: int = 125) -> None:
    try:
        os.write(err_w, message.encode(errors="replace"))
    finally:
        os._exit(code)


def _child_a(run: _Run, parent: int, err_w: int, sync_w: int, go_r: int, status_w: int, done_w: int) -> None:
    try:
        _die_with_parent(parent)
        if run.process.nice:
            os.nice(run.process.nice)  # inherited by B and C: the container never runs at our priority
        os.setpgid(0, 0)  # out of the terminal's foreground group: Ctrl-C goes to pybuild only
        _close_fds_except({0, 1, 2, err_w, sync_w, go_r, status_w, done_w, *run.child_fds})
        flags = _linux.CLONE_NEWNS | _linux.CLONE_NEWUTS | _linux.CLONE_NEWIPC | _linux.CLONE_NEWPID
        if run.network != NetworkMode.HOST:
            flags |= _linux.CLONE_NEWNET
        _linux.unshare(flags)
        if run.net is not None:
            os.write(sync_w, b"net\n")
            if os.read(go_r, 1) != b"g":
                os._exit(125)
        join_r, join_w = os.pipe()
        procs = run.cgroup.open_procs() if run.cgroup is not None else []  # before B pivots our shared root
        pid_b = os.fork()
        if pid_b == 0:
            os.close(join_w)
            _child_b(run, 0, err_w, status_w, join_r)  # its parent lies outside its pid namespace: pid 0
        os.close(join_r)
        try:
            for fd in procs:  # while B mounts its root (a v1 join waits for an RCU grace period)
                os.write(fd, b"%d" % pid_b)
            if procs:
                os.write(join_w, b"j")
        except OSError:  # B is gone (it reported why: an unknown user, ...) or cannot join
            os.kill(pid_b, signal.SIGKILL)
            _, wstatus = os.waitpid(pid_b, 0)
            if os.WIFEXITED(wstatus) and os.WEXITSTATUS(wstatus) == 125:
                os._exit(125)  # B's own message is the one to show
            raise
        os.write(sync_w, b"pid %d\n" % pid_b)
        _close_fds_except({0, 1, 2, done_w})
        _, wstatus = os.waitpid(pid_b, 0)
        os.close(done_w)  # now, not in exit(), where the last close waits until our namespaces are gone
        os._exit(os.waitstatus_to_exitcode(wstatus) if os.WIFEXITED(wstatus) else 128 + os.WTERMSIG(wstatus))
    except BaseException as exc:  # noqa: BLE001 - report and leave the forked child
        _fail(err_w, f"cannot create namespaces: {exc}")


def _child_b(run: _Run, parent: int, err_w: int, status_w: int, join_r: int) -> None:
    """PID 1 of the container. A moves it into the cgroup meanwhile; it waits for that before
    its own cgroup namespace and the process."""
    try:
        _die_with_parent(parent)
        _linux.set_process_title("pybuild-init")  # not pybuild's own command line, for all in the container to read
        os.umask(0o022)  # runc's, whatever the caller's (a RUN step's files must not depend on the host user's umask)
        _close_fds_except({0, 1, 2, err_w, status_w, join_r, *run.child_fds})
        p = run.process
        terminal = setup_root(run.scratch / "root", run.scratch, run.rootfs, run.mounts, run.scratch / "etc",
                              tty=p.tty, privileged=p.privileged, shm_size=p.shm_size,
                              cgroup_v1=run.cgroup.dirs if run.cgroup is not None and run.cgroup.version == 1 else None)
        if terminal is not None:  # the master to the caller; the slave becomes the process's stdio
            master, slave = terminal
            if run.tty_size is not None:
                fcntl.ioctl(master, termios.TIOCSWINSZ, run.tty_size)
            socket.send_fds(socket.socket(fileno=run.child_fds[0]), [b"t"], [master])
            os.close(master)
            run.child_fds = (slave, slave, slave)
        socket.sethostname(run.hostname)
        if run.network != NetworkMode.HOST:
            _netif.link_up("lo")
        if run.net is not None:
            run.net.configure_inside()  # type: ignore[attr-defined]
        user = resolve_user(p.user)
        env = process_environment(p, run.hostname, user.home)
        cwd = p.cwd or "/"
        if not os.path.isdir(cwd):
            os.makedirs(cwd, 0o755)
        cap_last = int(_read("/proc/sys/kernel/cap_last_cap") or 40)
        if run.cgroup is not None:
            if os.read(join_r, 1) != b"j":
                raise SandboxError("the container was not moved into its cgroup")
            _linux.unshare(_linux.CLONE_NEWCGROUP)
            if run.cgroup.version == 2:  # the container's own subtree, read-only, as Docker mounts it
                _linux.mount("cgroup2", "/sys/fs/cgroup", "cgroup2", NOSUID_NODEV_NOEXEC | _linux.MS_RDONLY)
        os.close(join_r)
    except SandboxError as exc:
        _fail(err_w, exc.message)
    except OSError as exc:
        _fail(err_w, f"cannot set up the container: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except BaseException as exc:  # noqa: BLE001
        _fail(err_w, f"cannot set up the container: {exc}")
    child = 0

    def forward(signum: int, _frame: object) -> None:
        if child:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    # Held back across the fork: a signal that lands before `child` is assigned would run
    # forward() with child == 0 and be lost (seen under load, where C can exec first).
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    child = os.fork()
    if child == 0:
        _child_c(run, err_w, env, user, cwd, cap_last)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    os.close(err_w)
    for fd in run.child_fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass
    while True:  # the init: reap everything, leave when the main process does
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os.write(status_w, struct.pack("i", wstatus))
            os._exit(os.waitstatus_to_exitcode(wstatus) if os.WIFEXITED(wstatus) else 128 + os.WTERMSIG(wstatus))


def _permitted_caps() -> frozenset[int]:
    """The capabilities this process holds (no set can grant more)."""
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("CapPrm:"):
            mask = int(line.split()[1], 16)
            return frozenset(c for c in range(64) if mask >> c & 1)
    return DEFAULT_CAPS


def _process_caps(p: ProcessSpec) -> frozenset[int]:
    return DEFAULT_CAPS if p.capabilities is None else p.capabilities & _permitted_caps()


def session_stdio(child_fds: tuple[int, int, int], tty: bool, uid: int, keep: int) -> None:
    """In a container's process, before it becomes its user: stdio from `child_fds`, a session of its
    own, the terminal (`tty`) as its controlling one and the user's (as runc gives it), every other
    descriptor but `keep` closed."""
    stdin, stdout, stderr = child_fds
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.setsid()
    if tty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.fchown(0, uid, -1)
    _close_fds_except({0, 1, 2, keep})


def _child_c(run: _Run, err_w: int, env: dict[str, str], user: object, cwd: str, cap_last: int) -> None:
    """The container's main process: stdio, session, privileges, exec."""
    p = run.process
    try:
        for sig in (*FORWARDED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)  # blocked by the init around fork
        session_stdio(run.child_fds, p.tty, user.uid, err_w)  # type: ignore[attr-defined]
        become(p, user, cwd, cap_last, run.seccomp)
    except BaseException as exc:  # noqa: BLE001
        _fail(err_w, exc.message if isinstance(exc, SandboxError) else f"cannot start the process: {exc}")
    execute(p, env, err_w)


def process_environment(p: ProcessSpec, hostname: str, home: str) -> dict[str, str]:
    """The process's environment: its own, then Docker's defaults (PATH, HOSTNAME, HOME, TERM)."""
    env = dict(p.env)
    env.setdefault("PATH", DEFAULT_PATH)
    if not p.sandbox:
        env.setdefault("HOSTNAME", hostname)
    env.setdefault("HOME", home)
    if p.tty:
        env.setdefault("TERM", "xterm")
    return env


def become(p: ProcessSpec, user: object, cwd: str, cap_last: int, seccomp_program: bytes) -> None:
    """In the process about to exec: keep only its capabilities, become its user, no new
    privileges, its working directory, then its seccomp filter (the last thing before exec)."""
    caps = _process_caps(p)
    for cap in range(cap_last + 1):
        if cap not in caps:
            _linux.prctl(_linux.PR_CAPBSET_DROP, cap)
    _linux.capset(caps)
    userns.check_mapped(user.uid, user.gid, user.groups)  # type: ignore[attr-defined]
    if userns.setgroups_allowed():
        os.setgroups(list(user.groups))  # type: ignore[attr-defined]
    os.setgid(user.gid)  # type: ignore[attr-defined]
    os.setuid(user.uid)  # type: ignore[attr-defined]
    _linux.prctl(_linux.PR_SET_NO_NEW_PRIVS, 1)
    os.chdir(cwd)
    if seccomp_program:
        from runtime.seccomp import load  # imported by the caller already

        load(seccomp_program)


def execute(p: ProcessSpec, env: dict[str, str], err_w: int) -> None:
    """exec the process; if that fails, Docker's message on its stderr and exit 127 or 126."""
    try:
        os.execvpe(p.argv[0], list(p.argv), env)
    except FileNotFoundError:
        msg, code = f'exec: "{p.argv[0]}": executable file not found in $PATH', 127
    except PermissionError:
        msg, code = f'exec: "{p.argv[0]}": permission denied', 126
    except OSError as exc:
        msg, code = f'exec: "{p.argv[0]}": {exc.strerror}', 126
    os.close(err_w)
    os.write(2, f"pybuild: {msg}\n".encode())
    os._exit(code)
