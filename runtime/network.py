"""Bridge networking: a `pybuild0` bridge (made with pyroute2), a veth pair per container (one
raw rtnetlink request, `_rtnl.py`, to stay off pyroute2's import cost), addresses from a small
file-backed IPAM, a default route and outbound NAT.

The host end of each veth is named `pb<container id[:11]>`; the container end is `eth0`. A veth
pair dies with the container's network namespace (the kernel tears it down in the background after
the container's last process), so nothing deletes it explicitly, and a killed container leaves at
most an IPAM entry behind. An address is reused once it was released or its owner process is gone,
and its veth is gone (see `_reusable()`).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runtime import _linux, _netif, _rtnl
from runtime.errors import NetworkError

BRIDGE = "pybuild0"
SUBNET = ipaddress.ip_network(os.environ.get("PYBUILD_BRIDGE_SUBNET", "10.89.0.0/24"))
GATEWAY = str(SUBNET.network_address + 1)
IPAM_DIR = Path(os.environ.get("PYBUILD_NET_DIR", "/var/lib/pybuild/network"))


def _iproute():  # type: ignore[no-untyped-def]
    from pyroute2 import IPRoute  # imported lazily: it costs ~150 ms

    return IPRoute()


@contextmanager
def _ipam() -> Iterator[dict[str, dict[str, object]]]:
    """The allocation table {ip: {"id": container id, "pid": owner pid}}, locked while in use."""
    IPAM_DIR.mkdir(parents=True, exist_ok=True)
    path = IPAM_DIR / f"ipam-{SUBNET.network_address}-{SUBNET.prefixlen}.json"
    with open(IPAM_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            table = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            table = {}
        before = dict(table)
        yield table
        if table != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(table, sort_keys=True))
            os.replace(tmp, path)


def _reusable(entry: dict[str, object]) -> bool:
    """An address is free again once it was released or its owner is gone, and the container's
    veth is gone too (it dies with the container's network namespace, which the kernel tears down
    asynchronously: until then the old namespace still answers for the address)."""
    done = entry.get("released") or not _linux.pid_alive(int(entry["pid"]))  # type: ignore[call-overload]
    return bool(done) and not os.path.exists(f"/sys/class/net/pb{str(entry['id'])[:11]}")


def allocate(container_id: str, owner: int) -> str:
    with _ipam() as table:
        for ip, entry in list(table.items()):
            if _reusable(entry):
                del table[ip]
        for host in SUBNET.hosts():
            ip = str(host)
            if ip != GATEWAY and ip not in table:
                table[ip] = {"id": container_id, "pid": owner}
                return ip
    raise NetworkError(f"no free address left in {SUBNET}")


def address_of(container_id: str) -> str | None:
    """The bridge address a container holds now, if any."""
    with _ipam() as table:
        for ip, entry in table.items():
            if entry.get("id") == container_id and not entry.get("released"):
                return ip
    return None


def release(ip: str) -> None:
    """Give an address back (reused once its container's veth is gone)."""
    with _ipam() as table:
        if ip in table:
            table[ip] = {**table[ip], "released": True}  # a new dict: _ipam() writes what differs
            if _reusable(table[ip]):
                del table[ip]


def sweep() -> list[str]:
    """Forget addresses whose owner is gone (or that were released) and whose veth is gone; return them."""
    freed: list[str] = []
    if not IPAM_DIR.exists():
        return freed
    with _ipam() as table:
        for ip, entry in list(table.items()):
            if _reusable(entry):
                freed.append(ip)
                del table[ip]
    return freed


def _iptables(*rule: str, table: str = "filter") -> None:
    """Add an iptables rule unless it is there already."""
    import subprocess

    base = ["iptables", "-w", "-t", table]
    if subprocess.run([*base, "-C", *rule], capture_output=True).returncode == 0:
        return
    proc = subprocess.run([*base, "-A", *rule], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"iptables -t {table} -A {' '.join(rule)}: {proc.stderr.strip()}")


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def ensure_bridge() -> None:
    """Create `pybuild0` with the gateway address, enable forwarding and outbound NAT (idempotent;
    a marker naming this boot and subnet makes later calls a couple of stat()s)."""
    marker = IPAM_DIR / f"bridge-{SUBNET.network_address}-{SUBNET.prefixlen}.ready"
    if Path(f"/sys/class/net/{BRIDGE}").exists() and marker.exists() and marker.read_text() == _boot_id():
        return
    with _iproute() as ipr:
        if not ipr.link_lookup(ifname=BRIDGE):
            try:
                ipr.link("add", ifname=BRIDGE, kind="bridge")
            except Exception as exc:  # noqa: BLE001 - pyroute2's NetlinkError; EEXIST when racing
                if "exists" not in str(exc).lower():
                    raise NetworkError(f"cannot create bridge {BRIDGE}: {exc}") from None
        index = ipr.link_lookup(ifname=BRIDGE)[0]
        addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)]
        if GATEWAY not in addrs:
            ipr.addr("add", index=index, address=GATEWAY, prefixlen=SUBNET.prefixlen)
        ipr.link("set", index=index, state="up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    _iptables("POSTROUTING", "-s", str(SUBNET), "!", "-o", BRIDGE, "-j", "MASQUERADE", table="nat")
    _iptables("FORWARD", "-i", BRIDGE, "-j", "ACCEPT")
    _iptables("FORWARD", "-o", BRIDGE, "-j", "ACCEPT")
    IPAM_DIR.mkdir(parents=True, exist_ok=True)
    marker.write_text(_boot_id())


class Bridge:
    """One container's attachment to `pybuild0`."""

    def __init__(self, container_id: str, address: str) -> None:
        self.container_id, self.address = container_id, address
        self.host_link = f"pb{container_id[:11]}"
        self.prefixlen = SUBNET.prefixlen

    @classmethod
    def attach(cls, container_id: str) -> "Bridge":
        ensure_bridge()
        return cls(container_id, allocate(container_id, os.getpid()))

    def plumb(self, pid: int) -> None:
        """Create the veth pair, its `eth0` end inside the network namespace of `pid`."""
        try:
            _rtnl.create_veth(self.host_link, "eth0", pid, BRIDGE)
        except OSError as exc:
            raise NetworkError(str(exc.strerror)) from None

    def configure_inside(self) -> None:
        """Inside the container's network namespace: address `eth0`, bring it up, route via the bridge."""
        _netif.set_address("eth0", self.address, self.prefixlen)
        _netif.link_up("eth0")
        _netif.add_default_route(GATEWAY)

    def detach(self) -> None:
        """Give the address back. The veth pair is not deleted here: it goes with the container's
        network namespace, which the kernel tears down in the background (deleting it ourselves
        waits for RCU grace periods: ~10 ms, more under load, on every `pybuild run`)."""
        release(self.address)
