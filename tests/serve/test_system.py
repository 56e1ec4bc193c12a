"""`pybuild serve` basics with the real docker CLI and docker-py: ping and version negotiation,
version and info, the unix socket's mode and group, and the TCP policy (TLS client verification,
or --insecure-tcp on loopback only)."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builder.registry_server import free_port
from tests.conftest import ROOT, requires_root
from tests.serve.conftest import DOCKER, Server, needs_docker, start_server, stop_server, which_docker_newer

pytestmark = [needs_docker, requires_root]


def test_ping_headers_and_version(server: Server) -> None:
    status, headers, body = server.api("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["API-Version"] == "1.41" and headers["Builder-Version"] == "1" and headers["OSType"] == "linux"
    status, headers, body = server.api("HEAD", "/_ping")
    assert status == 200 and headers["API-Version"] == "1.41"
    status, _, body = server.api("GET", "/v1.41/version")
    version = json.loads(body)
    assert status == 200 and version["ApiVersion"] == "1.41" and version["MinAPIVersion"] == "1.12"
    assert version["Platform"]["Name"].startswith("pybuild")


def test_version_prefixes_too_new_and_too_old(server: Server) -> None:
    status, _, body = server.api("GET", "/v1.99/version")
    assert status == 400 and "too new" in json.loads(body)["message"]
    status, _, body = server.api("GET", "/v1.5/version")
    assert status == 400 and "too old" in json.loads(body)["message"]
    status, _, body = server.api("GET", "/v1.41/no/such/endpoint")
    assert status == 404 and json.loads(body) == {"message": "page not found"}


def test_docker_cli_version_and_info(server: Server) -> None:
    out = server.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Platform.Name}}").stdout
    assert out.startswith("1.41 pybuild")
    info = json.loads(server.docker("info", "--format", "{{json .}}").stdout)
    assert info["Images"] >= 1 and info["OSType"] == "linux" and info["DockerRootDir"] == str(server.root)


def test_newer_cli_negotiates_down(server: Server, tmp_path: Path) -> None:
    newer = which_docker_newer()
    if newer is None:
        pytest.skip("no docker CLI newer than 20.10 on PATH")
    out = server.docker("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}", client=newer).stdout
    assert out.split() == ["1.41", "1.41"]  # the client lowered its version to the server's
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built-by-newer-cli > /n\n")
    assert "Successfully tagged newer:1" in server.docker("build", "-t", "newer:1", str(ctx), client=newer).stdout
    assert server.docker("run", "--rm", "newer:1", "cat", "/n", client=newer).stdout == "built-by-newer-cli\n"


def test_docker_py(server: Server) -> None:
    import docker

    client = docker.DockerClient(base_url=server.url, version="auto")
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.41"
        assert client.api.api_version == "1.41"
        assert any("busybox:latest" in i.tags for i in client.images.list())
    finally:
        client.close()


def test_socket_mode_and_group(tmp_path: Path, server: Server) -> None:
    group = grp.getgrnam("daemon")  # any group other than root's
    srv = start_server(tmp_path, server.root, "--group", "daemon", sock=tmp_path / "g.sock")
    try:
        st = os.stat(srv.sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, group.gr_gid)
    finally:
        stop_server(srv)
    assert not srv.sock.exists()


def test_stale_socket_is_replaced(tmp_path: Path, server: Server) -> None:
    import socket

    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on, as a SIGKILLed server leaves it
    srv = start_server(tmp_path, server.root, sock=stale)
    try:
        assert srv.alive()
    finally:
        stop_server(srv)


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", "serve", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_tcp_refused_without_tls(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve("-H", f"tcp://127.0.0.1:{port}")
    assert proc.returncode != 0 and "refusing TCP without TLS client verification" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _serve("-H", f"tcp://0.0.0.0:{port}", "--insecure-tcp")
    assert proc.returncode != 0 and "loopback addresses only" in proc.stderr
    proc = _serve("-H", f"tcp://127.0.0.1:{port}", "--tlsverify")
    assert proc.returncode != 0 and "--tlsverify needs --tlscacert, --tlscert, --tlskey" in proc.stderr


def test_insecure_tcp_on_loopback(tmp_path: Path, server: Server) -> None:
    port = free_port()
    srv = start_server(tmp_path, server.root, "-H", f"tcp://127.0.0.1:{port}", "--insecure-tcp")
    try:
        out = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.APIVersion}}"],
                             capture_output=True, text=True, timeout=30, env={**os.environ, "DOCKER_CONFIG": str(srv.config)})
        assert out.returncode == 0 and out.stdout.strip() == "1.41", out.stderr
    finally:
        stop_server(srv)


def _pki(d: Path) -> None:
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=test-ca")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext")
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-key.pem", "-out", "other.pem",
         "-days", "2", "-subj", "/CN=other")


def test_tls_client_verification(tmp_path: Path, server: Server) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    _pki(pki)
    port = free_port()
    srv = start_server(tmp_path, server.root, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
                       "--tlscacert", str(pki / "ca.pem"), "--tlscert", str(pki / "server-cert.pem"),
                       "--tlskey", str(pki / "server-key.pem"))
    try:
        def docker(cert: str, key: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert",
                                   str(pki / "ca.pem"), "--tlscert", str(pki / cert), "--tlskey", str(pki / key),
                                   "version", "--format", "{{.Server.APIVersion}}"], capture_output=True, text=True,
                                  timeout=30, env={**os.environ, "DOCKER_CONFIG": str(srv.config)})

        good = docker("client-cert.pem", "client-key.pem")
        assert good.returncode == 0 and good.stdout.strip() == "1.41", good.stderr
        bad = docker("other.pem", "other-key.pem")  # a certificate the CA did not sign
        assert bad.returncode != 0 and "Server:" not in bad.stdout
        assert srv.alive()
    finally:
        stop_server(srv)
