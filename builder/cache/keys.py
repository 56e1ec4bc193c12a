"""The build cache: content-hash keys, and key -> result entries stored with the key's parts.

A key is the sha256 of the canonical JSON of its parts: the op with the values it actually uses,
the parent's key, and checksums of the content it reads. Nothing machine-specific (absolute
paths, hostnames, times) goes into a part, so keys are stable across processes and machines.

Layout under the store root (see docs/build-records.md):

    cache/keys/<hex[:2]>/<hex>.json    {"key", "parts", "layer", "created", "duration"}
    cache/inputs/<hex>.json            {path: checksum} behind an "inputs" part, written once
    cache/copies/<hex>                 the last result of a COPY from the context (marshal): the
                                       chain id of its snapshot and {layer path: (sha256, inode)}
                                       of its files, so that a re-run links what did not change

(`cache/**/*.json` are garbage-collection roots of the store: the layers they name are kept;
`cache/copies/*` are only hints, and name snapshots that may be gone.)

Entries are written atomically (`util.atomic`, not durable); a torn or foreign file reads as a miss.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from builder.util.atomic import write_atomic

KEY_VERSION = 2  # bump when the meaning of a part or a step's result changes: every old key then misses
# (2: the audit of BuildKit semantics changed COPY, ADD, RUN heredoc and layer results for the same parts)
_COPIES_VERSION = 2  # 2: recorded files have no xattrs


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8. A file name that is not UTF-8 (legal
    on Linux and in tar; Python holds its bytes as surrogate escapes) is keyed by its own bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")


def _load(data: bytes) -> Any:
    """The value `canonical` wrote (its non-UTF-8 bytes back as surrogate escapes)."""
    return json.loads(data.decode("utf-8", "surrogateescape"))


def sha256_of(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheKey:
    """A cache key: its named parts (JSON values) and their digest."""

    parts: tuple[tuple[str, Any], ...]
    digest: str

    @classmethod
    def make(cls, **parts: Any) -> "CacheKey":
        """Key over `parts` (order does not matter; None parts are left out)."""
        items = tuple(sorted((k, v) for k, v in parts.items() if v is not None))
        return cls(items, sha256_of([KEY_VERSION, [list(i) for i in items]]))

    def part(self, name: str) -> Any:
        return dict(self.parts).get(name)

    def as_json(self) -> list[list[Any]]:
        return [[k, v] for k, v in self.parts]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What a key produced: a layer (a dict of diff_id, digest, size, media_type) or none."""

    key: str
    parts: list[list[Any]]
    layer: dict[str, Any] | None
    created: float
    duration: float


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, durable=False)  # a rebuildable cache: after a crash a torn entry reads as a miss


class BuildCache:
    """Key -> entry files under `<root>/cache`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.dir = Path(root) / "cache"

    def mount_dir(self, name: str) -> Path:
        """The persistent directory of the `RUN --mount=type=cache` mount called `name` (made if missing)."""
        path = self.dir / "mounts" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[-1]
        return self.dir / "keys" / hexd[:2] / f"{hexd}.json"

    def get(self, key: CacheKey | str) -> CacheEntry | None:
        """The entry for `key`, or None (missing, torn or for another key)."""
        digest = key if isinstance(key, str) else key.digest
        try:
            d = _load(self._path(digest).read_bytes())
            if d.get("key") != digest:
                return None
            return CacheEntry(d["key"], d["parts"], d.get("layer"), d["created"], d.get("duration", 0.0))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: CacheKey, layer: Mapping[str, Any] | None, duration: float = 0.0) -> CacheEntry:
        """Record what `key` produced; an existing entry is replaced atomically."""
        entry = CacheEntry(key.digest, key.as_json(), dict(layer) if layer is not None else None,
                           time.time(), round(duration, 6))
        body = {"key": entry.key, "parts": entry.parts, "layer": entry.layer,
                "created": entry.created, "duration": entry.duration}
        _atomic_write(self._path(key.digest), canonical(body))
        return entry

    def put_inputs(self, checksums: Mapping[str, str]) -> str:
        """Store a {path: checksum} table once; return its digest (what a key part holds)."""
        data = canonical(dict(checksums))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.dir / "inputs" / (digest.split(":", 1)[1] + ".json")
        if not path.exists():
            _atomic_write(path, data)
        return digest

    def inputs(self, digest: str) -> dict[str, str] | None:
        """The {path: checksum} table behind an inputs digest, if it was stored."""
        try:
            return _load((self.dir / "inputs" / (digest.split(":", 1)[1] + ".json")).read_bytes())
        except (OSError, ValueError):
            return None

    def copy_result(self, lineage: str) -> tuple[str, dict[str, tuple[bytes, int]]] | None:
        """The last result recorded for a COPY `lineage` (see `put_copy_result`), or None."""
        try:
            version, chain, files = marshal.loads((self.dir / "copies" / lineage.split(":", 1)[-1]).read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if version != _COPIES_VERSION or not isinstance(chain, str) or not isinstance(files, dict):
            return None
        return chain, files

    def put_copy_result(self, lineage: str, chain_id: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        """Remember the layer a COPY `lineage` (same instruction, same parent) made last: the chain id
        of its snapshot and {layer path: (content sha256, inode)} of its regular files."""
        _atomic_write(self.dir / "copies" / lineage.split(":", 1)[-1],
                      marshal.dumps((_COPIES_VERSION, str(chain_id), dict(files))))

    def forget_copy_results(self, keep_chain: Callable[[str], bool]) -> int:
        """Delete the COPY hints whose snapshot `keep_chain` rejects, or that cannot be read (after a
        prune removed snapshots: a hint to a gone snapshot is only a file to skip); return how many."""
        dropped = 0
        for path in (self.dir / "copies").glob("*"):
            found = self.copy_result(path.name)
            if found is None or not keep_chain(found[0]):
                path.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def entries(self) -> list[CacheEntry]:
        """Every readable entry (for `pybuild cache ls`)."""
        out = []
        for p in sorted((self.dir / "keys").glob("*/*.json")):
            e = self.get("sha256:" + p.stem)
            if e is not None:
                out.append(e)
        return out

    def remove(self, digest: str) -> None:
        try:
            self._path(digest).unlink()
        except FileNotFoundError:
            pass
