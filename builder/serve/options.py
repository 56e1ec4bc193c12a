"""What `pybuild serve` listens on, checked before anything is opened."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError

DEFAULT_HOST = "unix:///run/pybuild.sock"


class ServeError(BuildError):
    """A `pybuild serve` option or listener is wrong."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One `-H`: a unix socket path, or a TCP address and port."""

    kind: str  # unix | tcp
    path: str = ""
    host: str = ""
    port: int = 0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """`hosts` as `-H` gives them; `group` owns the unix sockets (mode 0660); TLS files for TCP;
    `insecure_tcp` allows plain TCP on loopback only; `store_root` None is the default store;
    `max_body` caps one request body (a build context, a loaded archive) on disk."""

    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    group: str | None = None
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp: bool = False
    store_root: Path | None = None
    max_body: int = 8 << 30
    listeners: tuple[Listener, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "listeners", tuple(self._listener(h) for h in self.hosts or (DEFAULT_HOST,)))

    def _listener(self, host: str) -> Listener:
        if host.startswith("unix://"):
            path = host[len("unix://"):]
            if not path.startswith("/"):
                raise ServeError(f"-H {host}: a unix socket needs an absolute path", hint="-H unix:///run/pybuild.sock")
            return Listener("unix", path=path)
        if not host.startswith("tcp://"):
            raise ServeError(f"-H {host}: expected unix:///PATH or tcp://ADDR:PORT")
        addr, sep, port = host[len("tcp://"):].rstrip("/").rpartition(":")
        addr = addr.strip("[]")
        try:
            number = int(port)
            ip = ipaddress.ip_address(addr or "0.0.0.0")
        except ValueError:
            raise ServeError(f"-H {host}: expected tcp://ADDR:PORT with an IP address and a port number") from None
        if not sep or not 0 < number < 65536:
            raise ServeError(f"-H {host}: the port must be 1..65535")
        if self.tlsverify:
            missing = [n for n, v in (("--tlscacert", self.tlscacert), ("--tlscert", self.tlscert),
                                      ("--tlskey", self.tlskey)) if not v]
            if missing:
                raise ServeError(f"-H {host}: --tlsverify needs {', '.join(missing)}")
        elif not self.insecure_tcp:
            raise ServeError(f"-H {host}: refusing TCP without TLS client verification",
                             hint="give --tlsverify --tlscacert --tlscert --tlskey, or --insecure-tcp on 127.0.0.1")
        elif not ip.is_loopback:
            raise ServeError(f"-H {host}: --insecure-tcp listens on loopback addresses only",
                             hint="use tcp://127.0.0.1:PORT, or TLS with --tlsverify for other addresses")
        return Listener("tcp", host=str(ip), port=number)
