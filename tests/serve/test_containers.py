"""Containers through `pybuild serve` with the real docker CLI: `docker run` in the foreground
(attach over a hijacked connection, exit codes, --rm, -t), `run -d -p` with a published port,
ps, logs, inspect, stop, kill, restart, rm, prune; and the same containers seen by `pybuild ps`."""

from __future__ import annotations

import json
import time

from tests.builder.registry_server import free_port
from tests.conftest import requires_root
from tests.serve.conftest import DOCKER, Server, fetch, needs_docker

pytestmark = [needs_docker, requires_root]


def test_run_in_the_foreground(server: Server) -> None:
    since = time.time()
    proc = server.docker("run", "--name", "fg1", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
    assert proc.returncode == 4, proc.stderr
    assert "out" in proc.stdout and "err" in proc.stdout + proc.stderr
    assert "Exited (4)" in server.docker("ps", "-a", "--filter", "name=fg1").stdout
    assert "fg1" in server.pybuild("ps", "-a").stdout  # the CLI sees the server's containers
    events = server.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}", "--filter",
                           "container=fg1", "--format", "{{json .}}").stdout
    seen = [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in map(json.loads, events.splitlines())]
    assert seen[:3] == [("create", None), ("start", None), ("die", "4")]
    proc = server.docker("run", "--rm", "busybox", "sh", "-c", "sleep 0.3; echo removed-after; exit 7", check=False)
    assert proc.returncode == 7 and "removed-after" in proc.stdout
    deadline = time.monotonic() + 5
    while "removed-after" in server.docker("ps", "-a", "--no-trunc").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "removed-after" not in server.docker("ps", "-a", "--no-trunc").stdout
    proc = server.docker("run", "-t", "busybox", "sh", "-c", "tty; exit 5", check=False)
    assert proc.returncode == 5 and "/dev/pts/" in proc.stdout
    proc = server.docker("run", "no-such-image:1", "true", check=False)
    assert proc.returncode == 125 and "no-such-image" in proc.stderr


def test_detached_with_a_published_port(server: Server) -> None:
    port = free_port()
    cid = server.docker("run", "-d", "--name", "web1", "-p", f"127.0.0.1:{port}:80", "busybox",
                        "sh", "-c", "echo started; exec httpd -f -p 80 -h /etc").stdout.strip()
    assert len(cid) == 64
    assert b"root:x:0:0" in fetch(f"http://127.0.0.1:{port}/passwd")
    ps = server.docker("ps").stdout
    assert "web1" in ps and f"127.0.0.1:{port}->80/tcp" in ps
    assert server.docker("port", "web1").stdout.strip().endswith(f"127.0.0.1:{port}")
    info = json.loads(server.docker("inspect", "web1").stdout)[0]
    assert info["State"]["Running"] is True and info["Id"] == cid and info["Name"] == "/web1"
    assert "started" in server.docker("logs", "web1").stdout
    server.docker("restart", "-t", "1", "web1")
    assert json.loads(server.docker("inspect", "web1").stdout)[0]["State"]["Running"] is True
    server.docker("stop", "-t", "1", "web1")
    info = json.loads(server.docker("inspect", "web1").stdout)[0]
    assert info["State"]["Running"] is False and info["State"]["Status"] == "exited"
    assert server.docker("kill", "web1", check=False).returncode == 1  # not running
    server.docker("rm", "web1")
    assert server.docker("inspect", "web1", check=False).returncode == 1


def test_kill_rm_force_logs_tail_and_prune(server: Server) -> None:
    server.docker("run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; "
                  "sleep 100")
    time.sleep(0.5)
    assert server.docker("logs", "--tail", "2", "sleeper").stdout.split() == ["line4", "line5"]
    proc = server.docker("rm", "sleeper", check=False)
    assert proc.returncode == 1 and "running" in proc.stderr
    server.docker("kill", "-s", "TERM", "sleeper")
    server.docker("wait", "sleeper")
    server.docker("run", "--name", "done1", "busybox", "true")
    pruned = server.docker("container", "prune", "-f").stdout
    assert "Total reclaimed space" in pruned
    assert "done1" not in server.docker("ps", "-a").stdout and "sleeper" not in server.docker("ps", "-a").stdout
    proc = server.docker("rm", "nope-nope", check=False)
    assert proc.returncode == 1 and "No such container: nope-nope" in proc.stderr


def test_stdin_of_docker_run_i(server: Server) -> None:
    proc = server.docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done",
                         input=b"hello\nworld\n")
    assert proc.returncode == 0 and proc.stdout == "hello\nworld\ndone\n"
    data = "".join(f"{i}\n" for i in range(50_000)).encode()  # more than a pipe holds: written as it is read
    proc = server.docker("run", "-i", "--rm", "busybox", "wc", "-l", input=data)
    assert proc.stdout.strip() == "50000"


def test_interactive_terminal(server: Server) -> None:
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the docker CLI on a real terminal, as a user at a shell
        os.execve(DOCKER, [DOCKER, "run", "-it", "--rm", "busybox", "sh"], server.env())
    out = b""

    def read_for(seconds: float) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                if select.select([fd], [], [], 0.1)[0]:
                    out += os.read(fd, 4096)
            except OSError:
                return

    read_for(3)
    os.write(fd, b"echo interactive-$((6*7))\n")
    read_for(2)
    os.write(fd, b"exit 9\n")
    read_for(2)
    _, status = os.waitpid(pid, 0)
    assert b"interactive-42" in out and os.waitstatus_to_exitcode(status) == 9


def test_add_host_and_shm_size(server: Server) -> None:
    proc = server.docker("run", "--rm", "--network", "none", "--add-host", "db:10.1.2.3", "--add-host", "v6:::1",
                         "--shm-size", "96m", "busybox", "sh", "-c", "tail -2 /etc/hosts; df -k /dev/shm")
    assert proc.stdout.splitlines()[:2] == ["10.1.2.3\tdb", "::1\tv6"] and " 98304 " in proc.stdout
    server.docker("create", "--name", "hs1", "--add-host", "a:1.2.3.4", "--shm-size", "1g", "busybox", "true")
    shown = server.docker("inspect", "--format", "{{.HostConfig.ExtraHosts}} {{.HostConfig.ShmSize}}", "hs1").stdout
    assert shown == "[a:1.2.3.4] 1073741824\n"
    server.docker("rm", "hs1")
    status, _, body = server.api("POST", "/containers/create", json.dumps(
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"ExtraHosts": ["nocolon"]}}).encode(),
        {"Content-Type": "application/json"})
    assert status == 400 and b"invalid --add-host 'nocolon'" in body
    status, _, body = server.api("POST", "/containers/create", json.dumps(
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"ShmSize": -1}}).encode(),
        {"Content-Type": "application/json"})
    assert status == 400 and b"SHM size can not be less than 0" in body
