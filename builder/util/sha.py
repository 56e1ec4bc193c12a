"""`sha256` for small inputs without importing `hashlib`.

Loading hashlib's OpenSSL binding costs ~3.5 ms, a tenth of what the cached no-op rebuild may
spend above interpreter start, and that path only hashes a few short strings. CPython's built-in
SHA-256 gives the same digests; bulk data (file contents, layers) still goes through hashlib.
"""

from __future__ import annotations


TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import Iterable

try:
    from _sha256 import sha256  # CPython <= 3.11
except ImportError:
    try:
        from _sha2 import sha256  # CPython >= 3.12
    except ImportError:  # a build without the built-in hashes
        from hashlib import sha256

__all__ = ["sha256", "chain_ids"]


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """OCI ChainIDs: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out
