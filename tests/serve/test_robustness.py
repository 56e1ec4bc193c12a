"""`pybuild serve` under load and after failures: 8 clients building at once (no lost image, no
corrupt blob, shared cache hits), a SIGKILLed server (the next start cleans up, nothing half
written), and the build cache through `docker system df` and `docker builder prune`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import requires_root
from tests.serve.conftest import Server, context_tar, needs_docker, start_server, stop_server, write_context

pytestmark = [needs_docker, requires_root]


def _check_blobs(root: Path) -> int:
    blobs = list((root / "blobs" / "sha256").iterdir())
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"corrupt blob {blob.name}"
    return len(blobs)


def test_eight_clients_build_at_once(server: Server, tmp_path: Path) -> None:
    def dockerfile(i: int) -> str:
        return f"FROM busybox\nRUN echo shared-step > /shared\nRUN echo {i} > /n && sleep 0.3\nCOPY f /f\n"

    contexts = [write_context(tmp_path / f"c{i}", {"Dockerfile": dockerfile(i), "f": f"file {i}\n"}) for i in range(8)]
    server.docker("build", "-q", str(contexts[0]))  # the shared step is in the cache from here on
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(lambda i: server.docker("build", "-t", f"conc:{i}", str(contexts[i])).stdout, range(8)))
    for i, out in enumerate(outputs):
        shared = out.split("RUN echo shared-step > /shared", 1)[1].split("Step", 1)[0]
        assert "Using cache" in shared, out  # every client hit the cache for the shared step
        assert f"Successfully tagged conc:{i}" in out
    listed = {f"{r['Repository']}:{r['Tag']}": r["ID"] for r in json.loads(server.pybuild("images", "--json").stdout)}
    assert len({listed[f"conc:{i}"] for i in range(8)}) == 8
    for i in (0, 7):
        assert server.docker("run", "--rm", f"conc:{i}", "cat", "/n", "/f").stdout == f"{i}\nfile {i}\n"
    assert _check_blobs(server.root) > 8
    with ThreadPoolExecutor(4) as pool:  # the same new Dockerfile from four clients at once
        same = write_context(tmp_path / "same", {"Dockerfile": "FROM busybox\nRUN echo same-at-once > /s\n"})
        done = list(pool.map(lambda i: server.docker("build", "-q", "-t", f"same:{i}", str(same)).stdout, range(4)))
    assert all(d.startswith("sha256:") for d in done)
    assert server.alive()


def test_sigkilled_server_leaves_nothing_half_done(server: Server, tmp_path: Path) -> None:
    other = start_server(tmp_path, server.root, sock=tmp_path / "k.sock")
    body = context_tar({"Dockerfile": "FROM busybox\nRUN echo killmarker-serve; i=0; while [ $i -lt 200 ]; do "
                                      "echo tick $i; i=$((i+1)); sleep 0.1; done\n"})
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(other.sock))
    s.sendall(f"POST /build?t=half:1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while b"tick 2" not in seen:
        seen += s.recv(4096)
    uploads = server.root / "tmp" / "serve-uploads"
    assert any(p.name.startswith(f"{other.proc.pid}-") for p in uploads.iterdir())
    os.kill(other.proc.pid, signal.SIGKILL)
    other.proc.wait()
    s.close()
    time.sleep(0.5)
    assert not _running("killmarker-serve")  # the build's RUN died with its server
    again = start_server(tmp_path, server.root, sock=tmp_path / "k.sock")  # the stale socket is replaced
    try:
        assert not any(p.name.startswith(f"{other.proc.pid}-") for p in uploads.iterdir())
        assert not list((server.root / "tmp").glob(f"step-{other.proc.pid}-*"))
        assert "half" not in again.docker("images").stdout
        _check_blobs(server.root)
    finally:
        stop_server(again)


def _running(text: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def test_system_df_and_builder_prune(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "df", {"Dockerfile": "FROM busybox\nRUN head -c 100000 /dev/urandom > /r\n"})
    server.docker("build", "-q", "-t", "df:1", str(ctx))
    df = json.loads(server.api("GET", "/v1.41/system/df")[2])
    assert any("df:1" in i["RepoTags"] for i in df["Images"]) and df["BuildCache"]
    out = server.docker("system", "df").stdout
    assert "Images" in out and "Build Cache" in out
    out = server.docker("builder", "prune", "-f").stdout
    assert "Total reclaimed space" in out
    assert json.loads(server.api("GET", "/v1.41/system/df")[2])["BuildCache"] == []
    assert "Using cache" not in server.docker("build", str(ctx)).stdout  # the cache is really gone


def test_sigterm_ends_long_streams_promptly(server: Server, tmp_path: Path) -> None:
    import subprocess

    from tests.serve.conftest import DOCKER

    other = start_server(tmp_path, server.root, sock=tmp_path / "t.sock")
    env = {**server.env(), "DOCKER_HOST": other.url}
    clients = [subprocess.Popen([DOCKER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for args in (["events"], ["run", "--name", "term-run", "busybox", "sleep", "60"])]
    deadline = time.monotonic() + 10
    while "term-run" not in server.docker("ps").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    t0 = time.monotonic()
    other.proc.send_signal(signal.SIGTERM)
    other.proc.wait(30)
    assert time.monotonic() - t0 < 10  # events, attach and wait streams do not hold the shutdown
    for c in clients:
        c.wait(10)  # and their clients see the end
    assert not other.sock.exists()
    server.docker("rm", "-f", "term-run")
