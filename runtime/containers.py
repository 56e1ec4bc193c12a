"""Containers that outlive one command: state under `<root>/<id>/`, a supervisor per detached
container, ps/logs/stop/kill/rm, and clean-up of what a killed pybuild left behind.

    <root>/<id>/config.json   what to run (ContainerConfig); written once
    <root>/<id>/state.json    status, supervisor and init pids, exit code, times; replaced atomically
    <root>/<id>/log.json      the container's output, Docker's json-file log (LogWriter, LogReader)
    <root>/<id>/output.log    what the supervisor of a detached container itself says (its errors)
    <root>/<id>/upper, work   the container's writable layer
    <root>/<id>/volumes/<n>   its anonymous volumes (an image's VOLUMEs, `-v /path`)

Ids are 64 hex characters, accepted as any unique prefix (ps shows 12), or the container's name.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, NamedTuple

from runtime import _linux
from runtime.errors import SandboxError
from runtime.executor import LinuxExecutor, Output, new_id, sweep_host
from runtime.spec import ExitStatus, Limits, Mount, NetworkMode, PortMapping, ProcessSpec, RootfsSpec

_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zealous")
_NOUNS = ("babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "knuth", "lovelace", "noether",
          "pascal", "ritchie", "shannon", "turing", "wozniak", "yalow")


class NoSuchContainer(SandboxError):
    exit_code = 1


class ContainerConfig(NamedTuple):
    """Everything needed to (re)start a container; `image` is the image id (a GC root for the store)."""

    id: str
    name: str
    image: str
    image_ref: str
    process: ProcessSpec
    lower: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    network: NetworkMode = NetworkMode.BRIDGE
    limits: Limits = Limits()
    ports: tuple[PortMapping, ...] = ()
    auto_remove: bool = False
    created: str = ""
    chain_ids: tuple[str, ...] = ()
    read_only: bool = False
    stop_signal: int = 15  # SIGTERM, or the image's STOPSIGNAL
    healthcheck: dict[str, Any] | None = None  # the image's HEALTHCHECK (Docker's Healthcheck), "Argv" added

    def to_json(self) -> str:
        caps = self.process.capabilities
        d = {**self._asdict(), "process": {**self.process._asdict(), "capabilities": None if caps is None else sorted(caps)},
             "mounts": [m._asdict() for m in self.mounts], "network": self.network.value,
             "limits": self.limits._asdict(), "ports": [p._asdict() for p in self.ports]}
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "ContainerConfig":
        d = json.loads(text)
        p = d["process"]
        return cls(
            id=d["id"], name=d["name"], image=d["image"], image_ref=d["image_ref"],
            process=ProcessSpec(argv=tuple(p["argv"]), env=tuple(tuple(e) for e in p["env"]), user=p["user"],
                                cwd=p["cwd"], tty=p["tty"], stdin=p["stdin"], hostname=p["hostname"],
                                capabilities=None if p.get("capabilities") is None else frozenset(p["capabilities"]),
                                seccomp=p.get("seccomp", ""),
                                extra_hosts=tuple(tuple(h) for h in p.get("extra_hosts", ())),  # type: ignore[misc]
                                shm_size=p.get("shm_size", 0)),
            lower=tuple(d["lower"]), mounts=tuple(Mount(**{**m, "options": tuple(m["options"])}) for m in d["mounts"]),
            network=NetworkMode(d["network"]), limits=Limits(**d["limits"]),
            ports=tuple(PortMapping(**p) for p in d["ports"]), auto_remove=d["auto_remove"],
            created=d["created"], chain_ids=tuple(d.get("chain_ids", ())), read_only=d.get("read_only", False),
            stop_signal=d.get("stop_signal", 15), healthcheck=d.get("healthcheck"))


class ContainerState(NamedTuple):
    status: str = "created"  # created | running | exited
    supervisor_pid: int = 0
    init_pid: int = 0
    exit_code: int | None = None
    started: str = ""
    finished: str = ""
    error: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class LogWriter:
    """Writes a container's output as Docker's json-file driver does, one object per line:
    `{"log": "hello\\n", "stream": "stdout", "time": "2026-12-07T19:13:55.546434123Z"}`. Bytes
    that are not UTF-8 are kept as `\\udcXX` escapes (`LogReader` gives them back exactly; Docker's
    readers see U+FFFD). A line is one entry once its newline comes (or at 16 KiB, or at the end),
    as Docker's copier makes them; what an attached client must see before that (a prompt, a
    terminal's echo) is written meanwhile as `"provisional": true` entries holding the bytes not
    shown yet, after 50 ms without more output, or at once with `immediate` (a terminal). Logs skip
    them; attach sends them and then only the rest of the line's entry.

    `sink(stream, fd)` is an `Output` callback that also copies the bytes to `fd` (the terminal
    of `pybuild run`)."""

    IDLE = 0.05
    MAX_LINE = 16 << 10  # Docker's copier buffer: longer lines are logged in pieces

    def __init__(self, path: Path, immediate: bool = False) -> None:
        import threading

        self.file = open(path, "ab")
        self.lock = threading.Condition()
        self.partial: dict[str, bytes] = {}  # the line so far, per stream
        self.shown: dict[str, int] = {}  # how much of it provisional entries hold
        self.due: dict[str, float] = {}
        self.immediate = immediate
        self.closed = False
        self.flusher: threading.Thread | None = None

    def sink(self, stream: str, fd: int | None) -> Callable[[bytes], None]:
        target = [fd]

        def write(data: bytes) -> None:
            rest = data
            try:
                while target[0] is not None and rest:
                    rest = rest[os.write(target[0], rest):]
            except OSError:  # the reader went away (`pybuild run ... | head`): the log still gets it all
                target[0] = None
            self._add(stream, data)
        return write

    def _add(self, stream: str, data: bytes) -> None:
        with self.lock:
            *lines, rest = (self.partial.get(stream, b"") + data).split(b"\n")
            pieces = [ln + b"\n" for ln in lines]
            while len(rest) >= self.MAX_LINE:
                pieces.append(rest[:self.MAX_LINE])
                rest = rest[self.MAX_LINE:]
            if pieces:
                self._write(stream, pieces)
                self.shown[stream] = 0
            self.partial[stream] = rest
            if rest and self.immediate:
                self._show(stream)
            elif rest:
                self.due[stream] = time.monotonic() + self.IDLE
                if self.flusher is None:
                    import threading

                    self.flusher = threading.Thread(target=self._flush_idle, daemon=True)
                    self.flusher.start()
                self.lock.notify()
            else:
                self.due.pop(stream, None)

    def _show(self, stream: str) -> None:
        """A provisional entry with what of the stream's unfinished line is not shown yet."""
        line, shown = self.partial.get(stream, b""), self.shown.get(stream, 0)
        if len(line) > shown:
            self._write(stream, [line[shown:]], provisional=True)
            self.shown[stream] = len(line)

    def _flush_idle(self) -> None:
        with self.lock:
            while not self.closed:
                if not self.due:
                    self.lock.wait()
                    continue
                now = time.monotonic()
                for stream, when in list(self.due.items()):
                    if when <= now:
                        del self.due[stream]
                        self._show(stream)
                if self.due:
                    self.lock.wait(max(0.0, min(self.due.values()) - now))

    def _write(self, stream: str, pieces: list[bytes], provisional: bool = False) -> None:
        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"
        extra = {"provisional": True} if provisional else {}
        self.file.write(b"".join(json.dumps({"log": p.decode(errors="surrogateescape"), "stream": stream,
                                             "time": stamp, **extra}).encode() + b"\n" for p in pieces))
        self.file.flush()

    def close(self) -> None:
        with self.lock:
            for stream, rest in self.partial.items():
                if rest:
                    self._write(stream, [rest])
            self.partial.clear()
            self.due.clear()
            self.closed = True
            self.lock.notify()
            self.file.close()


class LogEntry(NamedTuple):
    """One entry of a container's json-file log: its bytes, stream and time (ns since the epoch)."""

    data: bytes
    stream: str
    time: str  # RFC 3339 with nanoseconds, as written: 2026-12-07T19:13:55.546434123Z
    ns: int
    provisional: bool = False  # the start of a line, for attached clients; its entry follows


def stamp_ns(stamp: str) -> int:
    """`2026-12-07T19:13:55.546434123Z` -> nanoseconds since the epoch."""
    import calendar

    head, _, frac = stamp.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


class LogReader:
    """Reads a container's json-file log from its start, a complete entry at a time, as it grows
    (`logs --follow`, attach). The file is opened once: an --rm container's log goes with it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None
        self.rest = b""

    def read(self) -> builtins.list[LogEntry]:
        """The entries written since the last call (none when the log does not exist yet)."""
        if self.file is None:
            try:
                self.file = open(self.path, "rb")
            except FileNotFoundError:
                return []
        data = self.rest + self.file.read()
        *lines, self.rest = data.split(b"\n")
        out = []
        for line in lines:
            try:
                d = json.loads(line)
                out.append(LogEntry(d["log"].encode(errors="surrogateescape"), d["stream"], d["time"],
                                    stamp_ns(d["time"]), bool(d.get("provisional"))))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not an entry of ours (a torn line of a killed writer)
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def select_entries(entries: builtins.list[LogEntry], since_ns: int = 0, until_ns: int = 0,
                   tail: int = -1) -> builtins.list[LogEntry]:
    """Docker's filters on the log's lines (provisional entries left out): at or after `since`, at
    or before `until` (0: no bound), then the last `tail` of them (-1: all)."""
    kept = [e for e in entries if not e.provisional and e.ns >= since_ns and (not until_ns or e.ns <= until_ns)]
    if tail >= 0:
        kept = kept[len(kept) - tail:] if tail else []
    return kept


class Container:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self.config = ContainerConfig.from_json((path / "config.json").read_text())

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def log_path(self) -> Path:
        """The supervisor's own output (a failed start's message); the container's is `json_log_path`."""
        return self.path / "output.log"

    @property
    def json_log_path(self) -> Path:
        """Docker's json-file log: every line the container wrote, with its stream and time."""
        return self.path / "log.json"

    def health(self) -> dict[str, Any] | None:
        """Docker's State.Health (Status, FailingStreak, Log) of a container with a healthcheck."""
        from runtime.health import read

        return read(self.path) if self.config.healthcheck else None

    def state(self) -> ContainerState:
        try:
            return ContainerState(**json.loads((self.path / "state.json").read_text()))
        except (FileNotFoundError, ValueError):
            return ContainerState()

    def _set_state(self, **changes: Any) -> ContainerState:
        st = self.state()._replace(**changes)
        try:
            _write_atomic(self.path / "state.json", json.dumps(st._asdict()))
        except FileNotFoundError:
            if self.path.exists():
                raise
            # removed meanwhile (`rm -f` from elsewhere): there is nothing left to record it in
        return st

    def rootfs(self) -> RootfsSpec:
        return RootfsSpec(tuple(Path(p) for p in self.config.lower), self.path / "upper", self.path / "work",
                          self.config.read_only)

    def is_running(self) -> bool:
        st = self.state()
        return st.status == "running" and _linux.pid_alive(st.supervisor_pid)

    def run(self, executor: LinuxExecutor | None = None, *, stdout: Output = None, stderr: Output = None,
            stdin: int | None = None, on_start: Callable[[int], None] | None = None) -> ExitStatus:
        """Run in this process (the foreground case, and what the supervisor does); `on_start(pid)`
        gets the init's host pid before anything else hears of it."""
        c = self.config
        work = self.path / "work"
        if any(work.iterdir()):  # overlayfs wants an empty workdir; a fresh container has one
            shutil.rmtree(work)
            work.mkdir()
        self._set_state(status="running", supervisor_pid=os.getpid(), started=_now(), exit_code=None, error="")
        try:
            status = (executor or LinuxExecutor()).run(
                c.process, self.rootfs(), c.mounts, c.network, c.limits, stdout=stdout, stderr=stderr, stdin=stdin,
                ports=c.ports, container_id=self.id, on_start=lambda pid: self._started(pid, on_start))
        except BaseException as exc:
            msg = exc.message if isinstance(exc, SandboxError) else str(exc)
            self._set_state(status="exited", exit_code=125 if not isinstance(exc, KeyboardInterrupt) else 130,
                            finished=_now(), init_pid=0, error=msg)
            raise
        self._set_state(status="exited", exit_code=status.code, finished=_now(), init_pid=0)
        return status

    def _started(self, pid: int, on_start: Callable[[int], None] | None) -> None:
        if on_start:
            on_start(pid)
        self._set_state(init_pid=pid)

    def start_detached(self, timeout: float = 60.0) -> ContainerState:
        """Start a supervisor process that runs the container and outlives us; wait until it runs."""
        import subprocess

        self._set_state(status="created", init_pid=0, exit_code=None, error="")  # a restart: not the last run's exit
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        # The supervisor removes an --rm container only once we close `seen`: a quick process (or a
        # failed start) must not vanish, state and all, before we have read how it went.
        wait_r, seen = os.pipe()
        try:
            subprocess.Popen([sys.executable, "-m", "runtime.supervisor", str(self.path), str(wait_r)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                             close_fds=True, pass_fds=(wait_r,))
        finally:
            os.close(log)
            os.close(wait_r)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                st = self.state()
                if st.init_pid or st.status == "exited":
                    return st
                time.sleep(0.01)
        finally:
            os.close(seen)
        raise SandboxError(f"container {self.short_id} did not start within {timeout:.0f}s")

    def exec(self, process: ProcessSpec, **io: Any) -> ExitStatus:
        """Run `process` in this running container (`docker exec`); `io` as `runtime.nsexec.run_in`
        takes it (stdout, stderr, stdin, on_start, on_terminal)."""
        from runtime.nsexec import run_in

        st = self.state()
        if not self.is_running() or not st.init_pid:
            raise SandboxError(f"container {self.short_id} is not running")
        return run_in(st.init_pid, process, **io)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        st = self.state()
        if not self.is_running() or not st.init_pid:
            raise SandboxError(f"container {self.short_id} is not running")
        target = st.init_pid
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the container is no longer running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_running():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """The stop signal (SIGTERM unless the image says otherwise; the init forwards it), then
        SIGKILL after `timeout` seconds."""
        if not self.is_running():
            return
        self.kill(self.config.stop_signal)
        if not self.wait(timeout):
            self.kill(signal.SIGKILL)
            self.wait(5)

    def remove(self, force: bool = False) -> None:
        if self.is_running():
            if not force:
                raise SandboxError(f"cannot remove container {self.short_id}: it is running",
                                   hint="stop it first, or use rm -f")
            self.kill(signal.SIGKILL)
            self.wait(10)
        for _ in range(10):  # a --rm container's own pybuild may be removing it at the same time
            try:
                shutil.rmtree(self.path)
                return
            except FileNotFoundError:
                if not self.path.exists():
                    return


class Containers:
    """The containers under one directory (`$PYBUILD_ROOT/containers`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, image: str, image_ref: str, process: ProcessSpec, lower: list[Path], *, name: str = "",
               mounts: tuple[Mount, ...] = (), network: NetworkMode = NetworkMode.BRIDGE, limits: Limits = Limits(),
               ports: tuple[PortMapping, ...] = (), auto_remove: bool = False, volumes: tuple[str, ...] = (),
               chain_ids: tuple[str, ...] = (), read_only: bool = False, stop_signal: int = 15,
               healthcheck: dict[str, Any] | None = None) -> Container:
        """Record a new container; each path in `volumes` gets a fresh anonymous volume under the
        container's directory (filled from the image at its first start, removed with the container)."""
        self.root.mkdir(parents=True, exist_ok=True)
        cid = new_id()
        if name:
            if any(c.config.name == name for c in self.list()):
                raise SandboxError(f"the container name {name!r} is already in use",
                                   hint="remove that container or pick another --name")
        else:
            name = f"{_ADJECTIVES[int(cid[:4], 16) % len(_ADJECTIVES)]}_{_NOUNS[int(cid[4:8], 16) % len(_NOUNS)]}_{cid[:4]}"
        if not process.hostname:  # the short id; the host's name on the host's network (as Docker)
            process = process._replace(hostname=os.uname().nodename if network == NetworkMode.HOST else cid[:12])
        mounts += tuple(Mount(target, str(self.root / cid / "volumes" / str(i)), "volume")
                        for i, target in enumerate(volumes))
        config = ContainerConfig(cid, name, image, image_ref, process, tuple(str(p) for p in lower), mounts,
                                 network, limits, ports, auto_remove, _now(), chain_ids, read_only, stop_signal,
                                 healthcheck)
        tmp = self.root / f".{cid}.tmp"
        tmp.mkdir()
        (tmp / "upper").mkdir()
        (tmp / "work").mkdir()
        for i in range(len(volumes)):
            (tmp / "volumes" / str(i)).mkdir(parents=True)
        (tmp / "config.json").write_text(config.to_json())
        os.rename(tmp, self.root / cid)
        return Container(self.root / cid)

    def list(self) -> list[Container]:
        try:
            entries = sorted(self.root.iterdir(), key=_created, reverse=True)
        except FileNotFoundError:
            return []
        out = []
        for p in entries:
            if p.is_dir() and not p.name.startswith(".") and (p / "config.json").exists():
                try:
                    out.append(Container(p))
                except (OSError, ValueError, KeyError):
                    continue
        return out

    def get(self, ref: str) -> Container:
        """By full id, unique id prefix, or name."""
        containers = self.list()
        for c in containers:
            if c.config.name == ref or c.id == ref:
                return c
        hits = [c for c in containers if ref and c.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise NoSuchContainer(f"container id prefix {ref!r} is ambiguous ({len(hits)} containers)")
        raise NoSuchContainer(f"no such container: {ref}")

    def sweep(self) -> builtins.list[str]:  # `list` here is the method above
        """Mark containers whose supervisor died (kill -9) as exited, drop half-created directories,
        and clean stale cgroups, run dirs and addresses; returns the ids fixed."""
        fixed = []
        for c in self.list():
            st = c.state()
            if st.status == "running" and not _linux.pid_alive(st.supervisor_pid):
                c._set_state(status="exited", exit_code=st.exit_code if st.exit_code is not None else 137,
                             finished=_now(), init_pid=0, error="its supervisor died")
                fixed.append(c.id)
                if c.config.auto_remove:
                    shutil.rmtree(c.path, ignore_errors=True)
        if self.root.exists():
            for p in self.root.glob(".*.tmp"):
                if time.time() - p.stat().st_mtime > 60:
                    shutil.rmtree(p, ignore_errors=True)
        sweep_host()
        return fixed


def _created(path: Path) -> float:
    """When a container was created (its config.json is written once), newest listed first as in docker ps."""
    try:
        return (path / "config.json").stat().st_mtime
    except OSError:
        return 0.0


def since(when: str, now: float | None = None) -> str:
    """`5 seconds`, `2 minutes`, `Less than a second` since an ISO time."""
    if not when:
        return ""
    from datetime import datetime

    secs = int((now or time.time()) - datetime.fromisoformat(when).timestamp())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return "Less than a second" if secs < 1 else f"{secs} second{'s' if secs > 1 else ''}"


def format_status(st: ContainerState, now: float | None = None, health: str = "") -> str:
    """Docker's STATUS column: `Up 5 seconds`, `Up 2 minutes (healthy)` (`health` is State.Health's
    Status), `Exited (0) 2 minutes ago`, `Created`."""
    if st.status == "running" and _linux.pid_alive(st.supervisor_pid):
        shown = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return f"Up {since(st.started, now)}{shown.get(health, '')}"
    if st.status in ("running", "exited"):
        code = st.exit_code if st.exit_code is not None else 137
        return f"Exited ({code}) {since(st.finished, now) or 'a while'} ago"
    return "Created"
