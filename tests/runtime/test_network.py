"""Bridge networking, IPAM and port publishing, on real veths and the pybuild0 bridge."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from runtime import network
from runtime.executor import LinuxExecutor
from runtime.spec import NetworkMode, PortMapping, ProcessSpec, RootfsSpec
from tests.conftest import requires_root

pytestmark = requires_root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bridge_gives_eth0_an_address_and_a_default_route(run_in) -> None:
    r = run_in("sh", "-c", "ip -4 addr show eth0; ip route; ping -c1 -W2 " + network.GATEWAY,
               network=NetworkMode.BRIDGE)
    assert r.code == 0, r.err
    assert f"default via {network.GATEWAY} dev eth0" in r.out
    assert "inet 10." in r.out and "1 packets received" in r.out


def test_bridge_reaches_a_host_service_through_the_gateway(run_in) -> None:
    network.ensure_bridge()
    server = socket.socket()
    server.bind((network.GATEWAY, 0))
    server.listen(1)
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].sendall(b"hello from host\n"), daemon=True).start()
    r = run_in("sh", "-c", f"nc {network.GATEWAY} {port} </dev/null", network=NetworkMode.BRIDGE)
    server.close()
    assert r.out == "hello from host\n", r.err


def _host_indexes() -> set[int]:
    indexes = set()
    for name in os.listdir("/sys/class/net"):
        try:
            indexes.add(int(Path(f"/sys/class/net/{name}/ifindex").read_text()))
        except OSError:  # a link going away meanwhile
            pass
    return indexes


def test_veth_and_address_are_released_after_the_container(run_in) -> None:
    r = run_in("sh", "-c", "ip -4 -o addr show eth0; cat /sys/class/net/eth0/iflink", network=NetworkMode.BRIDGE)
    ip = r.out.split()[3].split("/")[0]
    host_peer = int(r.out.split()[-1])
    with network._ipam() as table:  # given back, but not reused while the veth still exists
        assert ip not in table or table[ip].get("released") or int(table[ip]["pid"]) != os.getpid()
    deadline = time.monotonic() + 30  # the kernel removes the pair with the network namespace
    while host_peer in _host_indexes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_peer not in _host_indexes()
    # The index can leave the listing while the link's sysfs entry (what the IPAM checks) is still
    # being torn down, so the address may take a moment longer to become free.
    while time.monotonic() < deadline:
        network.sweep()
        with network._ipam() as table:
            if ip not in table or int(table[ip]["pid"]) != os.getpid():
                break
        time.sleep(0.05)
    with network._ipam() as table:
        assert ip not in table or int(table[ip]["pid"]) != os.getpid()


def test_a_released_address_waits_for_its_veth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import _rtnl

    monkeypatch.setattr(network, "IPAM_DIR", tmp_path)
    cid = os.urandom(32).hex()
    link = f"pb{cid[:11]}"
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", f"pt{cid[:11]}"], check=True)
    try:
        a = network.allocate(cid, os.getpid())
        network.release(a)
        assert network.sweep() == [] and network.allocate("e" * 64, os.getpid()) != a  # its veth still exists
    finally:
        _rtnl.delete_link(link)
    assert network.sweep() == [a]


def test_ipam_reuses_addresses_of_dead_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "IPAM_DIR", tmp_path)
    a = network.allocate("a" * 64, os.getpid())
    b = network.allocate("b" * 64, os.getpid())
    assert a != b and network.GATEWAY not in (a, b)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    c = network.allocate("c" * 64, dead)  # its owner is already gone
    assert network.sweep() == [c]
    network.release(a)
    assert network.allocate("d" * 64, os.getpid()) == a  # lowest free address first


def test_published_port_reaches_the_container(busybox_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("published!\n")
    from runtime.spec import Mount

    port = _free_port()
    pids: list[int] = []
    result: list[object] = []
    process = ProcessSpec(argv=("httpd", "-f", "-p", "8080", "-h", "/www"))
    rootfs = RootfsSpec((busybox_dir,), tmp_path / "u", tmp_path / "w")

    def serve() -> None:
        result.append(LinuxExecutor().run(process, rootfs, (Mount("/www", str(tmp_path / "www"), readonly=True),),
                                          NetworkMode.BRIDGE, ports=(PortMapping(port, 8080, "127.0.0.1"),),
                                          on_start=pids.append))

    t = threading.Thread(target=serve)
    t.start()
    body = ""
    try:
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.05)
    finally:
        while not pids and t.is_alive():
            time.sleep(0.01)
        os.kill(pids[0], signal.SIGTERM)  # the init forwards it to httpd
        t.join(10)
    assert body == "published!\n"
    assert result and result[0].code == 143 and result[0].signal == signal.SIGTERM  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
