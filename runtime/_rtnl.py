"""The rtnetlink requests on the per-container hot path: create a veth pair whose peer lands in a
container's network namespace, enslaved to the bridge and up; delete a host link by name.

Everything else (the bridge and its address) goes through pyroute2 in `network.py`; this exists
because importing pyroute2 alone costs ~150 ms, the whole budget of `pybuild run`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

RTM_NEWLINK, RTM_DELLINK = 16, 17
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 10, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFF_UP = 0x1
NLA_F_NESTED = 0x8000


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("HH", length, kind) + payload + b"\0" * (-length % 4)


def _ifinfo(flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, flags, change)


def create_veth(name: str, peer: str, peer_netns_pid: int, master: str) -> None:
    """`ip link add NAME master MASTER up type veth peer name PEER netns PID`, in one request."""
    peer_msg = _ifinfo() + _attr(IFLA_IFNAME, peer.encode() + b"\0") + _attr(IFLA_NET_NS_PID,
                                                                            struct.pack("I", peer_netns_pid))
    linkinfo = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA | NLA_F_NESTED,
                                                        _attr(VETH_INFO_PEER | NLA_F_NESTED, peer_msg))
    body = (_ifinfo(IFF_UP, IFF_UP) + _attr(IFLA_IFNAME, name.encode() + b"\0")
            + _attr(IFLA_MASTER, struct.pack("I", socket.if_nametoindex(master)))
            + _attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo))
    _request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"cannot create veth {name}")


def delete_link(name: str) -> bool:
    """`ip link del NAME`; False when there is no such link (already gone)."""
    try:
        _request(RTM_DELLINK, 0, _ifinfo() + _attr(IFLA_IFNAME, name.encode() + b"\0"), f"cannot delete {name}")
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


def _request(kind: int, flags: int, body: bytes, what: str) -> None:
    """Send one request and raise OSError if the kernel's acknowledgement carries an error."""
    header = struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.send(header + body)
        reply = s.recv(65536)
    _, reply_kind, _, _, _ = struct.unpack_from("IHHII", reply)
    if reply_kind == NLMSG_ERROR:
        error = -struct.unpack_from("i", reply, 16)[0]
        if error:
            raise OSError(error, f"{what}: {os.strerror(error)}")
