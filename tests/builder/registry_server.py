"""Real registries for the tests: Debian's `docker-registry` (CNCF distribution) on 127.0.0.1.

    plain   http, anonymous                        registry()         fixture
    basic   http, htpasswd (bcrypt via htpasswd)   basic_registry()   user alice / s3cret
    tls     https with a CA these fixtures make    tls_registry()     trusted through certs.d
    token   http behind a Bearer token server      token_registry()   the token server runs here

`FaultProxy` sits in front of a registry and injects 500s, 429 with Retry-After, connection
resets in the middle of a body, and corrupted bodies, by rules the test sets.
All fixtures are session-scoped; each test uses its own repository names.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USER, PASSWORD = "alice", "s3cret"
REFRESH_TOKEN = "refresh-alice"  # an identity token the token server accepts for alice
needs_registry = pytest.mark.skipif(not os.path.exists(REGISTRY_BIN) or shutil.which("openssl") is None,
                                    reason="docker-registry and openssl are installed by scripts/install-test-deps")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, and a token-signing key."""

    dir: Path

    @classmethod
    def make(cls, d: Path) -> Pki:
        d.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "2", "-subj", "/CN=pybuild test CA", cwd=d)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                 "-subj", "/CN=127.0.0.1", cwd=d)
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:registry.test\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.crt",
                 "-days", "2", "-subj", "/CN=pybuild test token signer", cwd=d)
        return cls(d)

    def sign_jwt(self, claims: dict) -> str:
        """An RS256 JWT with the signing certificate in `x5c`, as distribution's token auth checks it."""
        der = subprocess.run(["openssl", "x509", "-in", str(self.dir / "token.crt"), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.dir / "token.key")],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"


class TokenServer:
    """A Docker-Hub-style token server: anonymous gets `pull`, alice/s3cret gets what she asks."""

    def __init__(self, pki: Pki, service: str = "pybuild-test-registry", issuer: str = "pybuild-test-issuer") -> None:
        self.pki, self.service, self.issuer = pki, service, issuer
        self.requests: list[dict] = []
        self.expires_in = 300
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                """OAuth2 refresh_token grant: the identity token `refresh-alice` stands for alice."""
                from urllib.parse import parse_qs

                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [REFRESH_TOKEN]:
                    self._answer(401, {})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                outer.requests.append({"user": USER, "scopes": scopes, "service": form.get("service", [""])[0],
                                       "grant": "refresh_token"})
                self._answer(200, {"access_token": outer.token(USER, scopes), "expires_in": outer.expires_in})

            def _answer(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                q = parse_qs(urlsplit(self.path).query)
                user = None
                authz = self.headers.get("Authorization", "")
                if authz.startswith("Basic "):
                    u, _, p = base64.b64decode(authz[6:]).decode().partition(":")
                    if (u, p) != (USER, PASSWORD):
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    user = u
                scopes = q.get("scope", [])
                outer.requests.append({"user": user, "scopes": scopes, "service": q.get("service", [""])[0]})
                self._answer(200, {"token": outer.token(user, scopes), "expires_in": outer.expires_in})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, user: str | None, scopes: list[str]) -> str:
        """A signed token granting `pull` to anyone and everything asked to a user."""
        access = []
        for sc in scopes:
            kind, rest = sc.split(":", 1)
            name, actions = rest.rsplit(":", 1)
            access.append({"type": kind, "name": name,
                           "actions": [a for a in actions.split(",") if user or a == "pull"]})
        now = int(time.time())
        return self.pki.sign_jwt({"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + 300,
                                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Registry:
    """A running docker-registry: `host` is `127.0.0.1:PORT`; `certs_dir` trusts its CA (TLS only)."""

    host: str
    scheme: str
    proc: subprocess.Popen
    root: Path
    certs_dir: Path | None = None
    token_server: TokenServer | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.token_server:
            self.token_server.close()


def start_registry(base: Path, *, auth: str = "none", pki: Pki | None = None, tls: bool = False) -> Registry:
    """Start docker-registry on a free 127.0.0.1 port; auth is none, htpasswd or token."""
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    data.mkdir(exist_ok=True)
    token_server = None
    lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true", "storage:",
             "  filesystem:", f"    rootdirectory: {data}", "  delete:", "    enabled: true",
             "http:", "  addr: 127.0.0.1:{port}", f"  secret: {os.urandom(16).hex()}"]
    if tls:
        assert pki
        lines += ["  tls:", f"    certificate: {pki.dir / 'server.crt'}", f"    key: {pki.dir / 'server.key'}"]
    if auth == "htpasswd":
        htpasswd = base / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
        lines += ["auth:", "  htpasswd:", "    realm: pybuild-test", f"    path: {htpasswd}"]
    elif auth == "token":
        assert pki
        token_server = TokenServer(pki)
        lines += ["auth:", "  token:", f"    realm: {token_server.realm}", f"    service: {token_server.service}",
                  f"    issuer: {token_server.issuer}", f"    rootcertbundle: {pki.dir / 'token.crt'}"]
    for _ in range(5):
        port = free_port()
        conf = base / "config.yml"
        conf.write_text("\n".join(lines).replace("{port}", str(port)) + "\n")
        log = base / "registry.log"
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(conf)], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        if _wait_listening(port, proc):
            certs = None
            if tls:
                assert pki
                certs = base / "certs.d"
                (certs / f"127.0.0.1:{port}").mkdir(parents=True, exist_ok=True)
                shutil.copy(pki.dir / "ca.crt", certs / f"127.0.0.1:{port}" / "ca.crt")
            return Registry(f"127.0.0.1:{port}", "https" if tls else "http", proc, data, certs, token_server, log)
        proc.kill()
        proc.wait()
    raise RuntimeError(f"docker-registry did not start; see {base / 'registry.log'}:\n{(base / 'registry.log').read_text()[-2000:]}")


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


# -- a fault-injecting reverse proxy ----------------------------------------------------------

@dataclass
class Fault:
    """Apply `kind` to the next `times` requests whose `METHOD path` matches `pattern`.

    kinds: `500`, `429` (with Retry-After: 1), `reset` (send half the body, then RST),
    `corrupt` (flip a byte of the body), `refuse` (close before answering),
    `redirect` (307 to the same path on the registry, as blob storage on another host does),
    `slow` (20 ms per 64 KiB of body), `norange` (forward without the Range header, as a registry
    that cannot resume does), `stall` (send half the body, then nothing for 30 s).
    """

    pattern: str
    kind: str
    times: int = 1
    hits: int = 0


class FaultProxy:
    """A reverse proxy to `upstream` (host:port, plain http) that injects the faults in `faults`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.log: list[str] = []
        self.ranges: list[str] = []  # the Range header of every blob GET ("" when absent)
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _handle(self) -> None:
                line = f"{self.command} {self.path}"
                fault = outer._take(line)
                outer.log.append(line + (f" !{fault.kind}" if fault else ""))
                if self.command == "GET" and "/blobs/sha256:" in self.path:
                    outer.ranges.append(self.headers.get("Range", ""))
                if fault and fault.kind in ("500", "429"):
                    self.send_response(int(fault.kind))
                    if fault.kind == "429":
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self._drain_request()
                    return
                if fault and fault.kind == "redirect":  # send the client to the registry itself
                    self.send_response(307)
                    self.send_header("Location", f"http://{outer.upstream}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault and fault.kind == "refuse":
                    self._rst()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                conn = http.client.HTTPConnection(outer.upstream, timeout=60)
                dropped = ("connection", "keep-alive") + (("range",) if fault and fault.kind == "norange" else ())
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                body = _reader(self.rfile, length) if length else None
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                        self.send_header(k, v)
                data_len = int(resp.getheader("Content-Length") or 0)
                if resp.getheader("Content-Length") is None and self.command != "HEAD":
                    data = resp.read()
                    data_len = len(data)
                    self.send_header("Content-Length", str(data_len))
                    chunks: Iterator[bytes] = iter([data])
                else:
                    chunks = iter(lambda: resp.read(1 << 16), b"")
                self.end_headers()
                if self.command == "HEAD":
                    conn.close()
                    return
                sent = 0
                for chunk in chunks:
                    if fault and fault.kind == "reset" and sent + len(chunk) >= data_len // 2:
                        self.wfile.write(chunk[: max(data_len // 2 - sent, 1)])
                        self.wfile.flush()
                        conn.close()
                        time.sleep(0.2)  # let the client read what was sent before the reset
                        self._rst()
                        return
                    if fault and fault.kind == "stall" and sent + len(chunk) >= data_len // 2:
                        self.wfile.write(chunk[: max(data_len // 2 - sent, 1)])
                        self.wfile.flush()
                        time.sleep(30)
                        conn.close()
                        return
                    if fault and fault.kind == "slow":
                        time.sleep(0.02)
                    if fault and fault.kind == "corrupt" and sent == 0 and chunk:
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                conn.close()

            def _drain_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                for _ in _reader(self.rfile, length):
                    pass

            def _rst(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, pattern: str, kind: str, times: int = 1) -> Fault:
        fault = Fault(pattern, kind, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take(self, line: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.hits < f.times and re.search(f.pattern, line):
                    f.hits += 1
                    return f
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TunnelProxy:
    """An HTTP proxy (CONNECT tunnels, and absolute-URI requests) that resolves names through
    `hosts` (e.g. {"registry.test": "127.0.0.1"}), so a test can reach a local registry under a
    name that is not loopback, which clients would never proxy. `seen` lists the targets asked for."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts: dict[str, str] = hosts
        self.seen: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                client.close()
                return
            head += data
        method, target = head.split(b" ", 2)[:2]
        if method == b"CONNECT":
            netloc = target.decode()
        else:
            netloc = target.decode().split("://", 1)[1].split("/", 1)[0]
        self.seen.append(f"{method.decode()} {netloc}")
        host, _, port = netloc.rpartition(":")
        upstream = socket.create_connection((self.hosts.get(host, host), int(port)))
        if method == b"CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
        else:
            rest = head  # the registry (Go) accepts absolute-URI requests as they are
        if rest:
            upstream.sendall(rest)

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(1 << 16):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def close(self) -> None:
        self.sock.close()


def _reader(f, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        data = f.read(min(1 << 16, left))
        if not data:
            return
        left -= len(data)
        yield data


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-http, anonymous registry."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry-basic"), auth="htpasswd")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry-tls"), pki=pki, tls=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry-token"), auth="token", pki=pki)
    yield reg
    reg.stop()


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.host)
    yield proxy
    proxy.close()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private $DOCKER_CONFIG for one test."""
    d = tmp_path / "docker-config"
    d.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    return d


def registry_env(reg: Registry, docker_config: Path | None = None) -> dict[str, str]:
    """Environment for a `pybuild` subprocess talking to `reg`."""
    env = {}
    if reg.certs_dir:
        env["PYBUILD_CERTS_DIR"] = str(reg.certs_dir)
    if docker_config:
        env["DOCKER_CONFIG"] = str(docker_config)
    return env


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
