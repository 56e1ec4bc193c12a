"""Issue 12, item 2: a RUN step has its own network namespace with outbound access (as docker
build), so services bound to the host's loopback are out of its reach; `--network=host` (with
the network.host entitlement) still is the host's network."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from runtime import network
from tests.conftest import pybuild, requires_root

pytestmark = requires_root


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    """A TCP server on 0.0.0.0 (so on the host's 127.0.0.1 and on the bridge's gateway) answering 'hello'."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_run_cannot_reach_the_hosts_loopback(store: dict[str, str], tmp_path: Path, server: int) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        f"RUN (nc -w 2 127.0.0.1 {server} </dev/null || echo refused) > /loopback\n"
        f"RUN nc -w 5 {network.GATEWAY} {server} </dev/null > /outbound\n"  # out through the bridge: NAT'd routing
        f"RUN --network=host nc -w 5 127.0.0.1 {server} </dev/null > /host\n")
    pybuild("build", "--allow", "network.host", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    fs = tmp_path / "fs"
    assert (fs / "loopback").read_text() == "refused\n"
    assert (fs / "outbound").read_text() == "hello\n"
    assert (fs / "host").read_text() == "hello\n"  # the server answers whoever reaches it: the isolation is real
