"""Byte sizes: Docker's on the command line (`512m`, `1g`, `1048576`: units of 1024), BuildKit's in
progress lines (`96B`, `1.23kB`, `4.51MB`: decimal units)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_bytes(text: str) -> int | None:
    """The number of bytes `text` names, or None when it is not a size."""
    m = _SIZE.fullmatch(text.strip())
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else None


def human_bytes(n: int) -> str:
    """BuildKit's sizes in status lines: `96B`, `1.23kB`, `4.51MB` (decimal units)."""
    if n < 1000:
        return f"{n}B"
    for unit in ("kB", "MB", "GB", "TB"):
        n_f = n / 1000
        if n_f < 1000 or unit == "TB":
            return f"{n_f:.2f}{unit}"
        n = int(n_f)
    return f"{n}B"
