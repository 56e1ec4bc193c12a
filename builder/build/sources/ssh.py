"""SSH agents for `RUN --mount=type=ssh`, as `docker buildx build --ssh` gives them.

    agents = SshAgents.parse(["default", "deploy=/keys/id_ed25519"])
    path = agents.socket("default")      # the agent socket on the host (None: not given)
    proxy = AgentProxy(path, uid=0, gid=0, mode=0o600)   # what the RUN sees, bind-mounted
    ...; proxy.close(); agents.close()

`ID` alone forwards $SSH_AUTH_SOCK; `ID=PATH[,PATH]` forwards the agent socket at PATH, or starts
an `ssh-agent` holding the key files given. A RUN never sees the host's socket path: it talks to
a per-step proxy socket whose owner and mode the mount decides, removed when the step ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from builder.errors import BuildError

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class SshAgents:
    """The `--ssh` sources of one build, by id; agents for key files start on first use."""

    def __init__(self, sources: dict[str, tuple[str, ...]]) -> None:
        self.sources = sources
        self._dir: Path | None = None  # private directory of our own agents' sockets
        self._sockets: dict[str, str] = {}
        self._agents: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, values: list[str], environ: dict[str, str] | None = None) -> "SshAgents":
        """`--ssh` values: `ID`, `ID=SOCKET` or `ID=KEY[,KEY...]`; checked before the build starts."""
        environ = dict(os.environ) if environ is None else environ
        sources: dict[str, tuple[str, ...]] = {}
        for value in values:
            sid, eq, rest = value.partition("=")
            if not sid or not set(sid) <= _ID_CHARS:
                raise BuildError(f"invalid --ssh {value!r}: expected ID[=SOCKET|KEY[,KEY...]]",
                                 hint="for example --ssh default, or --ssh default=$SSH_AUTH_SOCK")
            paths = tuple(p for p in rest.split(",") if p) if eq else ()
            if not paths:
                if not environ.get("SSH_AUTH_SOCK"):
                    raise BuildError(f"--ssh {sid}: SSH_AUTH_SOCK is not set",
                                     hint="start an ssh-agent, or give a socket or key file: --ssh ID=PATH")
                paths = (environ["SSH_AUTH_SOCK"],)
            for path in paths:
                try:
                    os.stat(path)
                except OSError as exc:
                    raise BuildError(f"--ssh {sid}: cannot read {path}: {exc.strerror}") from None
            if len(paths) > 1 and any(_is_socket(p) for p in paths):
                raise BuildError(f"--ssh {sid}: give one agent socket, or key files")
            sources[sid] = paths
        return cls(sources)

    def socket(self, sid: str) -> str | None:
        """The host agent socket for `sid`, or None when `--ssh` did not name it."""
        paths = self.sources.get(sid)
        if paths is None:
            return None
        if len(paths) == 1 and _is_socket(paths[0]):
            return paths[0]
        with self._lock:
            if sid not in self._sockets:
                self._sockets[sid] = self._start_agent(sid, paths)
            return self._sockets[sid]

    def _start_agent(self, sid: str, keys: tuple[str, ...]) -> str:
        """An `ssh-agent` of our own holding `keys` (buildx loads them into an in-process agent)."""
        if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
            raise BuildError(f"--ssh {sid}: loading key files needs ssh-agent and ssh-add",
                             hint="install openssh-client, or forward a running agent: --ssh ID=$SSH_AUTH_SOCK")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="pybuild-agent-"))
        path = str(self._dir / f"{len(self._agents)}.sock")
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", path], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._agents.append(agent)
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise BuildError(f"--ssh {sid}: ssh-agent did not start")
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": path, "SSH_ASKPASS_REQUIRE": "never", "DISPLAY": ""}
        for key in keys:
            added = subprocess.run(["ssh-add", "-q", key], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, start_new_session=True)  # no terminal: it can never prompt
            if added.returncode != 0:
                detail = (added.stderr.strip().splitlines() or ["ssh-add failed"])[-1]
                raise BuildError(f"--ssh {sid}: cannot load key {key}: {detail}",
                                 hint="a key with a passphrase must be added to a running agent: ssh-add KEY")
        return path

    def close(self) -> None:
        """Stop the agents this build started."""
        for agent in self._agents:
            agent.kill()
            agent.wait()
        self._agents.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class AgentProxy:
    """A socket that relays every connection to the agent at `upstream`, in a private directory
    with a short path (a socket path must fit in 108 bytes); `close()` removes both."""

    def __init__(self, upstream: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600) -> None:
        self.upstream = upstream
        self.path = Path(tempfile.mkdtemp(prefix="pybuild-ssh-")) / "agent.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chown(self.path, uid, gid)
        os.chmod(self.path, mode)
        self._listener.listen(16)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="ssh-proxy").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                conn.close()
                return
            threading.Thread(target=_relay_pair, args=(conn, self.upstream), daemon=True).start()

    def close(self) -> None:
        """Stop accepting (existing relays end with their connections) and remove the socket."""
        if self._closed:
            return
        self._closed = True
        try:  # wake the accept loop so that it sees the flag
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(self.path))
        except OSError:
            pass
        self._listener.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


def _relay_pair(conn: socket.socket, upstream: str) -> None:
    """Relay one client connection to a fresh connection to the agent, both ways."""
    with conn:
        try:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(upstream)
        except OSError:
            return
        with up:
            back = threading.Thread(target=_relay, args=(up, conn), daemon=True)
            back.start()
            _relay(conn, up)
            back.join()


def _relay(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until EOF, then pass the EOF on."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
