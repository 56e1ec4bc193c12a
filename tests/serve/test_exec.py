"""`docker exec` through `pybuild serve` with the real docker CLI and docker-py: a process in the
running container's namespaces, root and cgroup, with its environment, user and working directory
unless overridden; stdin, a terminal (sized by the client), detached runs, exit codes."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import requires_root
from tests.serve.conftest import DOCKER, Server, needs_docker

pytestmark = [needs_docker, requires_root]


@pytest.fixture(scope="module")
def running(server: Server) -> str:
    server.docker("run", "-d", "--name", "ex1", "--hostname", "exhost", "-e", "FOO=bar", "-w", "/tmp",
                  "--memory", "64m", "busybox", "sleep", "600")
    yield "ex1"
    server.docker("rm", "-f", "ex1", check=False)


def test_exec_runs_in_the_containers_namespaces(server: Server, running: str) -> None:
    assert server.docker("exec", running, "cat", "/etc/hostname").stdout == "exhost\n"
    proc = server.docker("exec", running, "sh", "-c", "echo $FOO $HOSTNAME; pwd; id -u; echo err >&2; exit 3",
                         check=False)
    assert proc.returncode == 3 and proc.stdout == "bar exhost\n/tmp\n0\n" and proc.stderr == "err\n"
    proc = server.docker("exec", "-u", "nobody", "-w", "/", "-e", "FOO=baz", running, "sh", "-c", "echo $FOO; pwd; id -un")
    assert proc.stdout == "baz\n/\nnobody\n"
    ps = server.docker("exec", running, "ps", "-o", "pid,args").stdout
    assert "sleep 600" in ps and len(ps.splitlines()) < 8  # the container's processes only, not the host's
    inside = server.docker("exec", running, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", check=False)
    if inside.returncode == 0:  # cgroup v1: the container's own memory cgroup, with its limit
        assert inside.stdout.strip() == str(64 << 20)
    host_net = os.readlink("/proc/self/ns/net")
    inspect = server.docker("inspect", "--format", "{{.State.Pid}}", running).stdout.strip()
    assert os.readlink(f"/proc/{inspect}/ns/net") != host_net


def test_exec_stdin_terminal_and_detach(server: Server, running: str) -> None:
    assert server.docker("exec", "-i", running, "cat", input=b"hi\n").stdout == "hi\n"
    data = b"".join(b"%d\n" % i for i in range(40_000))
    assert server.docker("exec", "-i", running, "wc", "-l", input=data).stdout.strip() == "40000"
    proc = server.docker("exec", "-t", running, "tty")
    assert proc.stdout.startswith("/dev/pts/")
    server.docker("exec", "-d", running, "sh", "-c", "sleep 0.5; echo later > /tmp/detached")
    deadline = time.monotonic() + 20
    while server.docker("exec", running, "cat", "/tmp/detached", check=False).stdout != "later\n":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_exec_on_a_terminal_is_sized_by_the_client(server: Server, running: str) -> None:
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        os.execve(DOCKER, [DOCKER, "exec", "-it", running, "sh", "-c", "sleep 0.5; stty size; exit 4"], server.env())
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert b"33 111" in out and os.waitstatus_to_exitcode(status) == 4


def test_exec_failures(server: Server, running: str) -> None:
    proc = server.docker("exec", running, "no-such-program", check=False)
    assert proc.returncode == 126 and 'exec: "no-such-program": executable file not found in $PATH' in proc.stdout
    proc = server.docker("exec", "-u", "nosuchuser", running, "true", check=False)
    assert proc.returncode == 126 and "unable to find user nosuchuser" in proc.stdout
    assert server.docker("exec", running, "sh", "-c", "kill -9 $$", check=False).returncode == 137
    proc = server.docker("exec", "nope-nope", "true", check=False)
    assert proc.returncode == 1 and "No such container: nope-nope" in proc.stderr
    server.docker("run", "--name", "ex-stopped", "busybox", "true")
    proc = server.docker("exec", "ex-stopped", "true", check=False)
    assert proc.returncode == 1 and "is not running" in proc.stderr
    server.docker("rm", "ex-stopped")
    status, _, body = server.api("GET", "/exec/0123/json")
    assert status == 404 and b"No such exec instance" in body


def test_docker_py_exec_run(server: Server, running: str) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=server.url)
    container = client.containers.get(running)
    assert container.exec_run("cat /etc/hostname").output == b"exhost\n"
    result = container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"], demux=True)
    assert result.exit_code == 2 and result.output == (b"out\n", b"err\n")
    result = container.exec_run(["sh", "-c", "echo $A; id -un; pwd"], environment={"A": "1"}, user="nobody",
                                workdir="/")
    assert result.output == b"1\nnobody\n/\n"
    eid = client.api.exec_create(running, ["sleep", "1"])["Id"]
    client.api.exec_start(eid, detach=True)
    assert client.api.exec_inspect(eid)["Running"] is True
    assert eid in client.api.inspect_container(running)["ExecIDs"]
    deadline = time.monotonic() + 20
    while client.api.exec_inspect(eid)["Running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.api.exec_inspect(eid)["ExitCode"] == 0
