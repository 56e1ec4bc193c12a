"""Interface setup from inside a container's network namespace with plain ioctls (no imports to
pay for in the container's init): bring links up, set an IPv4 address, add the default route."""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2


def _sockaddr_in(ip: str) -> bytes:
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))


def link_up(name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | IFF_UP))


def set_address(name: str, ip: str, prefix: int) -> None:
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFADDR, struct.pack("16s16s8x", name.encode(), _sockaddr_in(ip)))
        fcntl.ioctl(s, SIOCSIFNETMASK, struct.pack("16s16s8x", name.encode(), _sockaddr_in(mask)))


# struct rtentry (x86_64): pad, dst, gateway, genmask, flags, pad, pad, pad, metric, dev, mtu, window, irtt
_RTENTRY = "@L16s16s16sHhLPhPLLH6x"


def add_default_route(gateway: str) -> None:
    any_addr = _sockaddr_in("0.0.0.0")
    rt = struct.pack(_RTENTRY, 0, any_addr, _sockaddr_in(gateway), any_addr, RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0,
                     0, 0, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCADDRT, rt)
