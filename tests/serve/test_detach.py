"""Detach keys through `pybuild serve`: the real docker CLI on a terminal detaches from `docker run
-it` with ctrl-p,ctrl-q and from `docker exec -it` with custom keys, leaving the processes running;
a raw API client (docker-py's sockets) is detached by the server itself when it types the keys
(attach `detachKeys`, exec create `DetachKeys`, the default ctrl-p,ctrl-q); bad keys are refused."""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

from builder.serve.api import ApiError
from builder.serve.detach import DEFAULT, EscapeFilter, parse_detach_keys
from tests.conftest import requires_root
from tests.serve.conftest import DOCKER, Server, needs_docker


def test_detach_keys_are_read_as_dockerd_reads_them() -> None:
    assert parse_detach_keys("") == DEFAULT == b"\x10\x11"
    assert parse_detach_keys("ctrl-x,x") == b"\x18x" and parse_detach_keys("ctrl-@,ctrl-\\,a") == b"\x00\x1ca"
    for bad in ("ctrl-1", "xy", "ctrl-", ","):
        with pytest.raises(ApiError, match=r"Invalid detach keys"):
            parse_detach_keys(bad)
    f = EscapeFilter(b"\x10\x11")
    assert f.feed(b"ab\x10") == (b"ab", False)  # a possible start is held back...
    assert f.feed(b"\x10c") == (b"\x10\x10c", False)  # ...and passed on when it is not one
    assert f.feed(b"\x10") == (b"", False) and f.feed(b"\x11rest") == (b"", True)  # the keys, in any chunking:
    # neither they nor what follows them go on


def _terminal(argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the docker CLI on a real terminal, as a user at a shell
        os.execve(DOCKER, argv, env)
    return pid, fd


def _read(fd: int, seconds: float, until: bytes = b"") -> bytes:
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until in out):
        try:
            if select.select([fd], [], [], 0.1)[0]:
                out += os.read(fd, 4096)
        except OSError:
            break
    return out


def _exited(pid: int, seconds: float) -> int | None:
    """The exit code of the child `pid` once it ended within `seconds` (it is then reaped), else None."""
    end = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            return None
        time.sleep(0.1)


def _end(pid: int, code: int | None) -> None:
    """Kill the child `pid` unless it was reaped (`code` not None)."""
    if code is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@needs_docker
@requires_root
def test_the_docker_cli_detaches_and_the_container_runs_on(server: Server) -> None:
    pid, fd = _terminal([DOCKER, "run", "-it", "--name", "det1", "busybox", "sh"], server.env())
    code = None
    try:
        _read(fd, 5, b"# ")
        os.write(fd, b"echo before-$((6*7))\n")
        assert b"before-42" in _read(fd, 5, b"before-42")
        os.write(fd, b"\x10")
        time.sleep(0.2)
        os.write(fd, b"\x11")  # ctrl-p, ctrl-q, typed
        code = _exited(pid, 10)
        assert code == 0
    finally:
        _end(pid, code)
    try:
        code = 0
        time.sleep(1)
        assert server.docker("inspect", "--format", "{{.State.Running}}", "det1").stdout.strip() == "true"
        assert server.docker("exec", "det1", "echo", "still-here").stdout == "still-here\n"
        # an exec on a terminal, custom keys: the CLI leaves, the exec'd shell stays
        pid, fd = _terminal([DOCKER, "exec", "-it", "--detach-keys", "ctrl-x,x", "det1", "sh", "-c",
                             "echo in-exec; exec sleep 300"], server.env())
        assert b"in-exec" in _read(fd, 10, b"in-exec")
        code = None
        os.write(fd, b"\x18")
        time.sleep(0.2)
        os.write(fd, b"x")
        code = _exited(pid, 10)
        assert code == 1 and b"read escape sequence" in _read(fd, 1)  # the CLI's own words and status for exec
        assert "sleep 300" in server.docker("exec", "det1", "ps", "-o", "args").stdout
    finally:
        _end(pid, code)
        server.docker("rm", "-f", "det1", check=False)


def _recv_until(sock: socket.socket, want: bytes, seconds: float = 10) -> bytes:
    out = b""
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end and want not in out:
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        if not data:
            break
        out += data
    return out


def _closed_by_server(sock: socket.socket, seconds: float = 10) -> bool:
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


@needs_docker
@requires_root
def test_the_server_detaches_a_raw_client_that_types_the_keys(server: Server) -> None:
    import docker

    api = docker.APIClient(base_url=server.url, version="1.41")
    c = api.create_container("busybox", ["sh"], stdin_open=True, tty=True, name="det2")["Id"]
    try:
        with pytest.raises(docker.errors.APIError, match=r"Invalid detach keys \(ctrl-1\) provided"):
            api.attach_socket(c, params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-1"})
        conn = api.attach_socket(c, params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-x,x"})
        sock = conn._sock
        api.start(c)
        sock.sendall(b"echo api-$((5*5))\n")
        assert b"api-25" in _recv_until(sock, b"api-25")
        sock.sendall(b"\x18")
        sock.sendall(b"x")
        assert _closed_by_server(sock)
        sock.close()
        time.sleep(0.5)
        assert api.inspect_container(c)["State"]["Running"] is True  # its stdin stays open: sh runs on
        # exec: the default keys (ctrl-p,ctrl-q) and custom ones; the exec'd process runs on
        with pytest.raises(docker.errors.APIError, match=r"Invalid escape keys \(ctrl-1\) provided"):
            api.exec_create(c, ["sh"], stdin=True, tty=True, detach_keys="ctrl-1")
        for keys, typed in (("", b"\x10\x11"), ("ctrl-x,x", b"\x18x")):
            ex = api.exec_create(c, ["sh", "-c", "echo exec-ready; exec cat"], stdin=True, tty=True,
                                 detach_keys=keys or None)["Id"]
            sock = api.exec_start(ex, socket=True, tty=True)._sock
            assert b"exec-ready" in _recv_until(sock, b"exec-ready")
            sock.sendall(b"typed\n")
            assert b"typed" in _recv_until(sock, b"typed")
            sock.sendall(typed)
            assert _closed_by_server(sock)
            sock.close()
            time.sleep(0.3)
            assert api.exec_inspect(ex)["Running"] is True
    finally:
        api.remove_container(c, force=True)
