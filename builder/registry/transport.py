"""HTTP for the registry client: pooled keep-alive connections, TLS with custom CAs, retries.

Only `http.client` from the standard library: a registry speaks plain HTTP/1.1 and the bodies we
move are streamed files, so a small pool of persistent connections per host is all we need.

Proxies come from HTTPS_PROXY / HTTP_PROXY / NO_PROXY (loopback never proxied, as in Docker).
Whether a host may use plain http (loopback addresses and insecure registries; the registry
client decides by asking) and which CA certificates it trusts (Docker's `certs.d/HOST[:PORT]/*.crt`, plus
`client.cert`/`client.key` for TLS client auth) are decided by `RegistryOptions`.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import queue
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from builder.errors import RegistryError

__all__ = ["RegistryOptions", "Response", "Transport", "RETRY_STATUSES", "is_connection_error", "proxy_for"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK = 1 << 20
_CERTS_DIRS = ("/etc/docker/certs.d", "/etc/containers/certs.d")
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")

Body = bytes | Callable[[], Iterable[bytes] | bytes] | None


def _config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(os.environ.get("PYBUILD_CONFIG") or os.path.join(base, "pybuild", "config.json"))


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: insecure (plain http) hosts, CA directories, retry budget, timeouts."""

    insecure: frozenset[str] = frozenset()
    certs_dirs: tuple[str, ...] = _CERTS_DIRS
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 10.0
    timeout: float = 60.0  # one socket read or connect
    deadline: float = 120.0  # one request with its retries; a blob gets 1 s more per MiB
    max_connections: int = 8

    @classmethod
    def load(cls, insecure: Iterable[str] = (), deadline: float | None = None) -> RegistryOptions:
        """Options from `--insecure-registry` values, $PYBUILD_INSECURE_REGISTRIES, $PYBUILD_CERTS_DIR
        and the `insecure-registries` list of the config file ($PYBUILD_CONFIG or
        ~/.config/pybuild/config.json, shaped like Docker's daemon.json); the deadline of a request
        from `--timeout` or $PYBUILD_REGISTRY_TIMEOUT (seconds)."""
        hosts = set(insecure)
        hosts.update(h for h in os.environ.get("PYBUILD_INSECURE_REGISTRIES", "").split(",") if h)
        path = _config_file()
        if path.is_file():
            try:
                conf = json.loads(path.read_text())
                hosts.update(conf.get("insecure-registries", []))
            except (OSError, ValueError, AttributeError) as exc:
                raise RegistryError(f"{path}: cannot read registry settings: {exc}") from None
        certs = tuple(p for p in os.environ.get("PYBUILD_CERTS_DIR", "").split(":") if p) or _CERTS_DIRS
        try:
            retries = int(os.environ.get("PYBUILD_REGISTRY_RETRIES", "5"))
            if deadline is None:
                deadline = float(os.environ.get("PYBUILD_REGISTRY_TIMEOUT", "120"))
        except ValueError as exc:
            raise RegistryError(f"bad registry setting in the environment: {exc}") from None
        if not 0 < deadline < 1e9:
            raise RegistryError(f"the registry timeout must be a positive number of seconds, not {deadline:g}")
        return cls(insecure=frozenset(hosts), certs_dirs=certs, retries=retries, deadline=deadline,
                   timeout=min(60.0, deadline))

    def is_insecure(self, host: str) -> bool:
        """Listed with --insecure-registry: plain http allowed, TLS certificates not verified."""
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return host in self.insecure or bare in self.insecure

    def may_use_http(self, host: str) -> bool:
        """Plain http is allowed for insecure registries and loopback hosts (as Docker does)."""
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return self.is_insecure(host) or bare in _LOOPBACK or bare.startswith("127.")

    def ssl_context(self, host: str) -> ssl.SSLContext:
        """System CAs plus `certs.d/HOST/*.crt`; a client certificate from `client.cert`/`client.key`.
        Insecure registries skip verification."""
        ctx = ssl.create_default_context()
        if self.is_insecure(host):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for base in self.certs_dirs:
            d = Path(base, host)
            if not d.is_dir():
                continue
            for crt in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(crt))
            for cert in sorted(d.glob("*.cert")):
                key = cert.with_suffix(".key")
                if key.exists():
                    ctx.load_cert_chain(str(cert), str(key))
        return ctx


class Response:
    """A response whose body is read once: `.read()`, `.json()` or `.iter_bytes()`; then `.close()`."""

    def __init__(self, raw: http.client.HTTPResponse, url: str, release: Callable[[bool], None]) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.url = url
        self._raw, self._release, self._done = raw, release, False

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def iter_bytes(self, chunk: int = _CHUNK) -> Iterator[bytes]:
        try:
            while data := self._raw.read1(chunk):
                yield data
        except (OSError, http.client.HTTPException):
            self.close(reuse=False)
            raise
        self.close()

    def read(self, limit: int | None = None) -> bytes:
        """The body (at most `limit` bytes; the rest is dropped with the connection)."""
        if limit is None:
            return b"".join(self.iter_bytes())
        try:
            data = self._raw.read(limit)
        except (OSError, http.client.HTTPException):
            data = b""
        self.close(reuse=self._raw.isclosed())
        return data

    def json(self) -> object:
        data = self.read()
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise RegistryError(f"{self.url}: answered with malformed JSON ({len(data)} bytes)", status=self.status) from None

    def close(self, reuse: bool = True) -> None:
        if self._done:
            return
        self._done = True
        ok = reuse and not self._raw.will_close
        if ok and not self._raw.isclosed():  # drain a small unread body so the connection is reusable
            try:
                self._raw.read(65536)
            except (OSError, http.client.HTTPException):
                ok = False
            ok = ok and self._raw.isclosed()
        if not ok:
            self._raw.close()
        self._release(ok)


class Transport:
    """A pool of keep-alive connections per scheme://host, shared by threads."""

    def __init__(self, options: RegistryOptions) -> None:
        self.options = options
        self._pools: dict[tuple[str, str], queue.LifoQueue[http.client.HTTPConnection]] = {}
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        with self._lock:
            pool = self._pools.setdefault((scheme, netloc), queue.LifoQueue())
        try:
            return pool.get_nowait()
        except queue.Empty:
            pass
        proxy = proxy_for(scheme, netloc)
        if scheme == "https":
            with self._lock:
                ctx = self._ssl.get(netloc) or self._ssl.setdefault(netloc, self.options.ssl_context(netloc))
            conn = http.client.HTTPSConnection(proxy or netloc, timeout=self.options.timeout, context=ctx,
                                               blocksize=_CHUNK)
            if proxy:  # CONNECT through the proxy; TLS (and its checks) end to end with the registry
                host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
                conn.set_tunnel(host.strip("[]") or netloc, int(port) if port else None)
            return conn
        return http.client.HTTPConnection(proxy or netloc, timeout=self.options.timeout, blocksize=_CHUNK)

    def _give_back(self, scheme: str, netloc: str, conn: http.client.HTTPConnection, reuse: bool) -> None:
        if not reuse:
            conn.close()
            return
        pool = self._pools[(scheme, netloc)]
        if pool.qsize() < self.options.max_connections:
            pool.put(conn)
        else:
            conn.close()

    def send(self, method: str, url: str, headers: Mapping[str, str], body: Body = None,
             timeout: float | None = None) -> Response:
        """One request, one attempt; raises OSError/HTTPException on connection trouble. `timeout`:
        for connecting and each read of this request and its body (default: the options')."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "http" and proxy_for("http", parts.netloc):
            target = f"http://{parts.netloc}{target}"  # a plain-http proxy wants the absolute URI
        for fresh in (False, True):
            payload = body() if callable(body) else body
            conn = self._connect(parts.scheme, parts.netloc)
            if fresh:  # a pooled connection the server had closed: retry once on a new one
                conn.close()
            conn.timeout = min(self.options.timeout, timeout) if timeout else self.options.timeout
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            try:
                conn.request(method, target, body=payload, headers=dict(headers))
                raw = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                conn.close()
                if fresh or not (payload is None or isinstance(payload, bytes) or callable(body)):
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            return Response(raw, url, functools.partial(self._give_back, parts.scheme, parts.netloc, conn))
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, retry_after: str = "") -> None:
        """Sleep before retry `attempt` (1-based): Retry-After when given, else exponential with jitter."""
        delay = self.options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
        if retry_after.strip().isdigit():
            delay = float(retry_after.strip())
        time.sleep(min(delay, self.options.max_backoff))

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            while not pool.empty():
                pool.get_nowait().close()


def proxy_for(scheme: str, netloc: str) -> str | None:
    """The `host:port` of the proxy for a registry, from HTTPS_PROXY / HTTP_PROXY / NO_PROXY.

    As in Go (and so Docker), loopback hosts are never proxied.
    """
    if not any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") for k in os.environ):
        return None
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    if host in _LOOPBACK or host.startswith("127."):
        return None
    import urllib.request

    if urllib.request.proxy_bypass(host):  # proxy_bypass_environment on Linux (no_proxy)
        return None
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return f"{parts.hostname}:{parts.port or 80}"


def is_connection_error(exc: BaseException) -> bool:
    """Errors worth a retry: resets, timeouts, a server that closed the connection mid-answer."""
    return isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException, ssl.SSLEOFError)) \
        or (isinstance(exc, OSError) and exc.errno in (104, 110, 111, 32))
