"""`pybuild run` and RUN networking as an unprivileged user: none, host, and the isolated network
with outbound access through slirp4netns (what `--network bridge` means rootless), `-p` through its
port forwarding; resource limits refused where no cgroup is delegated."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import requires_tool
from tests.rootless.conftest import Runner

pytestmark = requires_tool("slirp4netns")
HOST_IFACES = {p.name for p in Path("/sys/class/net").iterdir() if not p.name.startswith("pb")}  # not others' veths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interfaces(ip_addr: str) -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in ip_addr.splitlines() if line[:1].isdigit()}


def test_network_modes(user: Runner, user_store: dict[str, str]) -> None:
    run = ("run", "--rm")
    bridge = user.pybuild(*run, "busybox", "sh", "-c", "ip -o addr; cat /etc/resolv.conf", env=user_store).stdout
    assert "tap0" in bridge and "10.0.2.100/24" in bridge and "nameserver 10.0.2.3" in bridge, bridge
    same = user.pybuild(*run, "--network", "bridge", "busybox", "ip", "-o", "addr", env=user_store).stdout
    assert "10.0.2.100/24" in same
    none = user.pybuild(*run, "--network", "none", "busybox", "ip", "addr", env=user_store).stdout
    assert interfaces(none) == {"lo"}
    host = user.pybuild(*run, "--network", "host", "busybox", "ip", "addr", env=user_store).stdout
    assert "tap0" not in interfaces(host) and interfaces(host) >= HOST_IFACES


@pytest.fixture
def host_server() -> Iterator[int]:
    """An HTTP server on the host's 127.0.0.1 (what 10.0.2.2 reaches when host loopback is allowed)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"from the host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_outbound_through_slirp4netns(user: Runner, user_store: dict[str, str], host_server: int) -> None:
    url = f"http://10.0.2.2:{host_server}/"
    allowed = user.pybuild("run", "--rm", "busybox", "wget", "-q", "-O-", url,
                           env={**user_store, "PYBUILD_SLIRP_HOST_LOOPBACK": "1"})
    assert allowed.stdout == "from the host\n"
    refused = user.pybuild("run", "--rm", "busybox", "wget", "-q", "-O-", url, env=user_store, check=False)
    assert refused.returncode != 0  # the host's loopback is out of reach by default


def test_run_detached_publishes_a_port_on_loopback(user: Runner, user_store: dict[str, str]) -> None:
    work = user.workdir()
    (work / "www").mkdir()
    (work / "www/index.html").write_text("hello rootless\n")
    user.give(work)
    port = free_port()
    name = f"web{port}"
    try:
        user.pybuild("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "-v", f"{work / 'www'}:/www",
                     "busybox", "httpd", "-f", "-p", "80", "-h", "/www", env=user_store)
        assert f"127.0.0.1:{port}->80/tcp" in user.pybuild("ps", env=user_store).stdout
        body = b""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.05)
        assert body == b"hello rootless\n"
        user.pybuild("stop", "-t", "2", name, env=user_store)
    finally:
        user.pybuild("rm", "-f", name, env=user_store, check=False)
        shutil.rmtree(work, ignore_errors=True)
    with pytest.raises(OSError):  # the forward went with the container
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_run_steps_networks(user: Runner, user_store: dict[str, str]) -> None:
    """A RUN's default network is its own namespace (slirp4netns rootless); --network none and host too."""
    work = user.workdir()
    try:
        (work / "Dockerfile").write_text("FROM busybox\nRUN ip -o addr > /ip-default; cat /etc/resolv.conf > /resolv\n"
                                         "RUN --network=none ip addr > /ip-none\n")
        user.give(work)
        user.pybuild("build", "-t", "netsteps:1", str(work), env=user_store)
        show = ("run", "--rm", "--network", "none", "netsteps:1", "cat")
        out = user.pybuild(*show, "/ip-none", env=user_store).stdout
        assert interfaces(out) == {"lo"}
        out = user.pybuild(*show, "/ip-default", "/resolv", env=user_store).stdout
        assert "tap0" in out and "10.0.2.100/24" in out and "nameserver 10.0.2.3" in out, out
        (work / "Dockerfile").write_text("FROM busybox\nRUN ip addr > /ip-host\n")
        user.pybuild("build", "--network", "host", "-t", "netsteps:2", str(work), env=user_store)
        out = user.pybuild(*show[:-2], "netsteps:2", "cat", "/ip-host", env=user_store).stdout
        assert "tap0" not in interfaces(out) and interfaces(out) >= HOST_IFACES  # the user's network
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_limits_are_refused_without_a_delegated_cgroup(user: Runner, user_store: dict[str, str]) -> None:
    """This host has cgroup v1/hybrid: nothing is delegated to a user, so a limit is a clear error."""
    for flag in (("--memory", "64m"), ("--cpus", "1"), ("--pids-limit", "50")):
        proc = user.pybuild("run", "--rm", *flag, "busybox", "true", env=user_store, check=False)
        assert proc.returncode != 0 and "cgroup v2" in proc.stderr and "limits" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert user.pybuild("run", "--rm", "busybox", "true", env=user_store).returncode == 0
