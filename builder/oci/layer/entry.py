"""One layer tar entry: its `Header`, the entry types, and tar names confined to the root."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from builder.errors import ImageFormatError

__all__ = ["Header", "split_name", "log_warning", "Warn",
           "REG", "LNK", "SYM", "CHR", "BLK", "DIR", "FIFO", "TYPES", "MAX_PATH", "CHUNK"]

REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
TYPES = (REG, LNK, SYM, CHR, BLK, DIR, FIFO)  # every entry type a layer may hold
MAX_PATH = 4096  # PATH_MAX: longer names could not be used inside a container anyway
CHUNK = 1 << 20  # bytes of entry data read or written at a time

Warn = Callable[[str], None]

_log = logging.getLogger("pybuild.layers")


@dataclass(frozen=True, slots=True)
class Header:
    """One tar entry's metadata (numeric ownership only; xattrs as raw bytes)."""

    name: str
    type: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


def log_warning(msg: str) -> None:
    """The default `Warn`: a warning on the `pybuild.layers` logger."""
    _log.warning("%s", msg)


def split_name(name: str) -> list[str]:
    """The path components of a tar name inside the root; refuses names that would leave it."""
    if "\0" in name:
        raise ImageFormatError(f"tar entry name {name!r} contains a NUL byte")
    if len(os.fsencode(name)) > MAX_PATH:
        raise ImageFormatError(f"tar entry name is longer than {MAX_PATH} bytes: {name[:60]!r}...")
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise ImageFormatError(f"tar entry {name!r} points outside the root; refusing it")
            parts.pop()
        else:
            parts.append(p)
    return parts
