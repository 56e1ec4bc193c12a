"""Docker's byte sizes on the command line: `512m`, `1g`, `100k`, `1.5g`, `1048576` (units of 1024)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_bytes(text: str) -> int | None:
    """The number of bytes `text` names, or None when it is not a size."""
    m = _SIZE.fullmatch(text.strip())
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else None
