"""`pybuild run`: run a command in a new container (like `docker run`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from builder.containers import RunOptions, create
from builder.errors import BuildError
from builder.util.paths import default_root
from runtime.errors import SandboxError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print the container id")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/PROTO]",
                   help="publish a container port on the host")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set an environment variable")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE", help="read environment variables from FILE")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]|CTR",
                   help="bind mount a host path, or give the container an anonymous volume at CTR")
    p.add_argument("--name", default="", help="name the container")
    p.add_argument("--hostname", default="", help="container hostname (default: the short id)")
    p.add_argument("--network", default="bridge", choices=["none", "host", "bridge"], help="network mode")
    p.add_argument("-m", "--memory", help="memory limit (e.g. 512m, 1g)")
    p.add_argument("--cpus", type=float, help="number of CPUs (e.g. 0.5)")
    p.add_argument("--pids-limit", type=int, help="maximum number of processes")
    p.add_argument("--entrypoint", help="override the image's ENTRYPOINT ('' clears it)")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="USER name[:group] or uid[:gid]")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="of a multi-platform image, run this platform's (default: this machine's); emulated "
                        "through qemu-user-static when it is not this machine's")
    p.add_argument("--security-opt", action="append", default=[], metavar="seccomp=PROFILE.json|unconfined",
                   help="seccomp profile (default: Docker's default profile)")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP",
                   help="add a line to /etc/hosts (repeatable; IP host-gateway: the host)")
    p.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm (e.g. 128m; default 64m)")
    p.add_argument("--no-healthcheck", action="store_true", help="run no HEALTHCHECK the image has")
    for flag, what in (("cmd", "command to run to check health (CMD-SHELL)"), ("interval", "time between checks"),
                       ("timeout", "maximum time a check may take"), ("start-period", "time to start before "
                       "failures count"), ("start-interval", "time between checks in the start period"),
                       ("retries", "failures in a row that make it unhealthy")):
        p.add_argument(f"--health-{flag}", metavar="N" if flag == "retries" else "CMD" if flag == "cmd" else "DURATION",
                       help=what + ("" if flag in ("cmd", "retries") else " (ms|s|m|h)"))
    p.add_argument("image", help="image name, name:tag, or id")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments (default: the image's CMD)")


# What docker's sig-proxy passes on (all it can catch but SIGCHLD, SIGPIPE, SIGWINCH: a terminal's
# size follows by itself); an unhandled USR1 would otherwise kill pybuild and with it the container.
PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class _SignalProxy:
    """Pass a signal sent to pybuild on to the container's init (which forwards it), as docker's
    sig-proxy. A signal that comes before the init's pid is known waits for it, not lost; a second
    Ctrl-C before then gives up on the start."""

    def __init__(self) -> None:
        self.pid = 0
        self.pending: list[int] = []

    def handle(self, signum: int, _frame: object) -> None:
        if self.pid:
            _kill(self.pid, signum)
        elif signum == signal.SIGINT and signum in self.pending:
            raise KeyboardInterrupt
        else:
            self.pending.append(signum)

    def started(self, pid: int) -> None:
        self.pid = pid
        while self.pending:
            _kill(pid, self.pending.pop(0))


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def run(args: argparse.Namespace) -> int:
    opts = RunOptions(
        command=tuple(args.command), entrypoint=args.entrypoint, env=tuple(args.env), env_files=tuple(args.env_file),
        user=args.user, workdir=args.workdir, tty=args.tty, interactive=args.interactive, hostname=args.hostname,
        volumes=tuple(args.volume), publish=tuple(args.publish), network=args.network, memory=args.memory,
        cpus=args.cpus, pids_limit=args.pids_limit, name=args.name, auto_remove=args.rm, read_only=args.read_only,
        platform=args.platform, security_opt=tuple(args.security_opt), add_hosts=tuple(args.add_host),
        shm_size=args.shm_size, no_healthcheck=args.no_healthcheck,
        health=tuple((flag, str(value)) for flag in ("cmd", "interval", "timeout", "start-period", "start-interval",
                                                     "retries")
                     if (value := getattr(args, "health_" + flag.replace("-", "_"))) is not None))
    try:
        container = create(default_root(), args.image, opts)
    except (SandboxError, BuildError) as exc:  # docker run's own failures (no such image, ...) exit 125
        setattr(exc, "exit_code", 125)  # the CLI exits with it (SandboxError, the runtime's, declares none)
        raise
    if args.detach:
        st = container.start_detached()
        if st.status == "exited" and st.error:
            failed = SandboxError(f"container {container.short_id} failed to start: {st.error}")
            failed.exit_code = 125  # type: ignore[attr-defined]  # as docker run -d
            raise failed
        print(container.id)
        return 0
    proxy = _SignalProxy()
    previous = {sig: signal.signal(sig, proxy.handle) for sig in PROXIED}
    from runtime.containers import LogWriter

    log = LogWriter(container.json_log_path, immediate=args.tty)  # kept for `pybuild logs`, as docker keeps every container's
    stop_health = None
    if container.config.healthcheck:  # probed as dockerd does, for a foreground container too
        from runtime.health import start

        stop_health = start(container)
    try:
        status = container.run(stdout=log.sink("stdout", 1), stderr=None if args.tty else log.sink("stderr", 2),
                               on_start=proxy.started)
    except SandboxError as exc:
        setattr(exc, "exit_code", 125)  # the CLI exits with it (SandboxError, the runtime's, declares none)
        raise
    finally:
        if stop_health is not None:
            stop_health.set()
        log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.rm:
            container.remove(force=True)
    if os.path.basename(sys.argv[0]) in ("pybuild", "__main__.py"):  # the CLI process, not a library caller
        # The container is gone and cleaned up: skip the interpreter's teardown (~15 ms of module
        # and object finalization on a command whose whole budget is ~150 ms).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status.code)
    return status.code
