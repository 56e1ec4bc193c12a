"""The rootless `bridge`: a private network namespace given outbound access by slirp4netns.

Without root there is no bridge, veth or NAT on the host. slirp4netns (Debian package) joins the
container's network namespace, makes a tap device there (`tap0`, 10.0.2.100/24, gateway 10.0.2.2,
DNS forwarder 10.0.2.3) and carries its traffic through ordinary sockets of the user; published
ports (`run -p`) are its host forwards, added through its API socket. The host's loopback stays
out of reach of the container (`--disable-host-loopback`), as podman's default, unless
$PYBUILD_SLIRP_HOST_LOOPBACK=1 (then 10.0.2.2 is the host's 127.0.0.1: podman's allow_host_loopback).

Same shape as `runtime.network.Bridge` for the executor: `attach`, `plumb(pid)` once the
container's namespace exists, `configure_inside()`, `detach()`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Sequence

from runtime.errors import NetworkError
from runtime.spec import PortMapping

__all__ = ["Slirp", "tool"]

ADDRESS = "10.0.2.100"
DNS = "10.0.2.3"
MTU = 65520
READY_TIMEOUT = 10.0


def tool() -> str | None:
    """The user-mode network tool rootless networking uses (None when not installed)."""
    return shutil.which("slirp4netns")


class Slirp:
    """slirp4netns serving one container's network namespace."""

    address = ADDRESS
    dns = DNS

    def __init__(self, container_id: str, ports: Sequence[PortMapping], scratch: Path, binary: str) -> None:
        self.container_id, self.ports, self.scratch, self.binary = container_id, tuple(ports), scratch, binary
        self.pid = 0
        self.exit_w = -1

    @classmethod
    def attach(cls, container_id: str, ports: Sequence[PortMapping], scratch: Path) -> "Slirp":
        binary = tool()
        if binary is None:
            raise NetworkError("rootless: the isolated network needs slirp4netns, which is not installed",
                               hint="install it as root (apt-get install slirp4netns), or use --network host/none")
        return cls(container_id, ports, scratch, binary)

    def plumb(self, pid: int) -> None:
        """Start slirp4netns on the network namespace of `pid`, wait until tap0 is up, publish the ports."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        api = self.scratch / "slirp.sock"
        log = self.scratch / "slirp.log"
        loopback = [] if os.environ.get("PYBUILD_SLIRP_HOST_LOOPBACK") == "1" else ["--disable-host-loopback"]
        argv = [self.binary, "--configure", f"--mtu={MTU}", *loopback, f"--ready-fd={ready_w}",
                f"--exit-fd={exit_r}", *(["--api-socket", str(api)] if self.ports else []), str(pid), "tap0"]
        with open(log, "wb") as out:
            self.pid = os.posix_spawn(self.binary, argv, os.environ, file_actions=[  # type: ignore[arg-type]
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 2), (os.POSIX_SPAWN_DUP2, ready_w, ready_w),
                (os.POSIX_SPAWN_DUP2, exit_r, exit_r)])
        os.close(ready_w)
        os.close(exit_r)
        self.exit_w = exit_w
        try:
            ready = os.read(ready_r, 1)
        finally:
            os.close(ready_r)
        if ready != b"1":
            self.detach()
            raise NetworkError(f"rootless: slirp4netns failed: {_tail(log)}")
        for port in self.ports:
            self._forward(api, port)

    def _forward(self, api: Path, port: PortMapping) -> None:
        request = {"execute": "add_hostfwd", "arguments": {
            "proto": port.protocol, "host_addr": port.host_ip, "host_port": port.host_port,
            "guest_addr": ADDRESS, "guest_port": port.container_port}}
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(api))
                    s.sendall(json.dumps(request).encode())
                    s.shutdown(socket.SHUT_WR)
                    reply = b""
                    while chunk := s.recv(4096):
                        reply += chunk
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise NetworkError("rootless: slirp4netns' API socket did not appear") from None
                time.sleep(0.01)
        answer = json.loads(reply or b"{}")
        if "error" in answer or "return" not in answer:
            desc = answer.get("error", {}).get("desc", reply.decode(errors="replace"))
            raise NetworkError(f"cannot publish {port.host_ip}:{port.host_port}/{port.protocol}: {desc}",
                               hint="is the port already in use?")

    def configure_inside(self) -> None:
        """Nothing: slirp4netns configured tap0, its address and route from outside (--configure)."""

    def detach(self) -> None:
        """Stop slirp4netns. It keeps no state worth a clean exit (the namespace it served is going
        away): it is killed, not asked (it takes ~20 ms to notice its exit fd closing), and reaped
        later (the kernel takes ~15 ms more to tear its tap device down): every RUN of a rootless
        build waited for both. (The exit fd still ends it if we die first.)"""
        if self.exit_w >= 0:
            os.close(self.exit_w)
            self.exit_w = -1
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _EXITING.append(self.pid)
            self.pid = 0
        reap_exited()


_EXITING: list[int] = []  # killed slirp4netns processes not reaped yet


def reap_exited() -> None:
    """Reap the killed slirp4netns processes that are gone; the others wait for the next call (or,
    when we exit first, for init: a zombie holds nothing but its pid)."""
    for pid in list(_EXITING):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _EXITING.remove(pid)


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"
