"""A `pybuild serve` per test module (its own store with busybox:latest, a unix socket in a temp
dir), and helpers to drive it with the real docker CLI, docker-py and raw HTTP."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, pybuild

DOCKER = "/usr/bin/docker"  # Debian's docker.io 20.10 client (API 1.41)
needs_docker = pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker.io is installed by scripts/install-test-deps")


@dataclass
class Server:
    sock: Path
    root: Path
    proc: subprocess.Popen
    config: Path  # a private $DOCKER_CONFIG
    log: Path

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.url, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(self.config),
                "PYBUILD_ROOT": str(self.root), **extra}

    def docker(self, *args: str, check: bool = True, input: bytes | None = None, cwd: str | os.PathLike[str] | None = None,
               timeout: float = 120, client: str = DOCKER) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([client, *args], input=input.decode() if input is not None else None, capture_output=True,
                              text=True, env=self.env(), cwd=cwd, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"
                                 f"server log:\n{self.log.read_text()[-3000:]}")
        return proc

    def pybuild(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return pybuild(*args, check=check, env={"PYBUILD_ROOT": str(self.root)})

    def api(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = UnixHTTPConnection(str(self.sock))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def alive(self) -> bool:
        return self.proc.poll() is None and self.api("GET", "/_ping")[0] == 200


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def start_server(base: Path, root: Path, *args: str, sock: Path | None = None) -> Server:
    sock = sock or base / "pybuild.sock"
    log = base / "serve.log"
    config = base / "docker-config"
    config.mkdir(exist_ok=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "builder", "serve", "-H", f"unix://{sock}", *args],
                            env={**os.environ, "PYBUILD_ROOT": str(root), "PYTHONPATH": path},
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    server = Server(sock, root, proc, config, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pybuild serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if server.api("GET", "/_ping")[0] == 200:
                return server
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"pybuild serve did not answer:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Server]:
    """A running `pybuild serve` with its own store holding busybox:latest (shared by one module)."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "store"
    pybuild("import", str(busybox_tar), "busybox:latest", env={"PYBUILD_ROOT": str(root)})
    srv = start_server(base, root)
    yield srv
    stop_server(srv)
    from builder.containers import containers

    for c in containers(root).list():  # nothing a test started outlives the module
        c.remove(force=True)


def json_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(x) for x in data.splitlines() if x.strip()]


def context_tar(files: dict[str, str | bytes], compress: str = "") -> bytes:
    """A build context as the docker CLI sends it (`compress`: "" or "gz")."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compress}" if compress else "w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_context(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    return path


def fetch(url: str, seconds: float = 10) -> bytes:
    """GET `url`, retried while the container's server is still starting."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def which_docker_newer() -> str | None:
    """A docker CLI newer than 20.10 on PATH (it negotiates the API version down), if any."""
    for cand in (shutil.which("docker"), "/usr/local/bin/docker"):
        if cand and os.path.realpath(cand) != os.path.realpath(DOCKER) and os.path.exists(cand):
            return cand
    return None
