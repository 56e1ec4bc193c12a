"""Interface setup from inside a container's network namespace with plain ioctls (no imports to
pay for in the container's init): bring links up, set an IPv4 address, add the default route."""

from __future__ import annotations

import ctypes
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


class _RtEntry(ctypes.Structure):
    _fields_ = [
        ("rt_pad1", ctypes.c_ulong), ("rt_dst", ctypes.c_char * 16), ("rt_gateway", ctypes.c_char * 16),
        ("rt_genmask", ctypes.c_char * 16), ("rt_flags", ctypes.c_ushort), ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong), ("rt_pad4", ctypes.c_void_p), ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p), ("rt_mtu", ctypes.c_ulong), ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


def add_default_route(gateway: str) -> None:
    rt = _RtEntry()
    rt.rt_dst = _sockaddr_in("0.0.0.0")
    rt.rt_genmask = _sockaddr_in("0.0.0.0")
    rt.rt_gateway = _sockaddr_in(gateway)
    rt.rt_flags = RTF_UP | RTF_GATEWAY
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCADDRT, bytes(rt))
