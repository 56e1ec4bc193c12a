"""Detach keys: the key sequence that, typed into an attached terminal's stdin, ends the attach
(or exec start) and leaves the process running, as dockerd does. `ctrl-p,ctrl-q` by default;
`detachKeys` on attach, `DetachKeys` on exec create; only for a terminal (dockerd's rule).

Keys are written as dockerd's `term.ToBytes` reads them: comma-separated, each one character or
`ctrl-X` with X one of a-z, @, [, \\, ], ^, _.
"""

from __future__ import annotations

from builder.serve.api import ApiError

DEFAULT = b"\x10\x11"  # ctrl-p, ctrl-q
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """The byte sequence of `text` (DEFAULT when empty); ApiError(400) with dockerd's words when bad."""
    if not text:
        return DEFAULT
    out = bytearray()
    for key in text.split(","):
        low = key.lower()
        if len(key) == 1 and ord(key) < 128:
            out.append(ord(key))
        elif low.startswith("ctrl-") and len(low) == 6 and "a" <= low[5] <= "z":
            out.append(ord(low[5]) - ord("a") + 1)
        elif low.startswith("ctrl-") and len(low) == 6 and low[5] in _CTRL:
            out.append(_CTRL[low[5]])
        else:
            raise ApiError(400, f"Invalid detach keys ({text}) provided")
    return bytes(out)


class EscapeFilter:
    """Looks for the detach keys in a stream of stdin bytes: `feed(data)` returns the bytes to pass
    on (a partial match is held back until the next byte decides) and whether the keys were typed
    (what follows them is dropped, and so are they)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0  # how many of the keys the last bytes matched

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.matched and self.keys[0] not in data:
            return data, False  # the usual case: nothing like the keys
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    return bytes(out), True
                continue
            if self.matched:  # not the sequence after all: what was held back goes on
                out += self.keys[:self.matched]
                self.matched = 0
                if byte == self.keys[0]:
                    self.matched = 1
                    continue
            out.append(byte)
        return bytes(out), False
