"""The no-op rebuild: recognise a build whose every input is unchanged, without parsing or solving.

A build's result is a function of the Dockerfile, its options, the base images and the context
content its steps read. After a successful build we store those inputs next to the result:

    cache/memo/<hex>.json   {"bases": {tag: image id}, "inputs": [[sources, excludes, checksum]],
                             "image_id", "steps": [...], "tags": [...]}

keyed by the Dockerfile bytes, the `.dockerignore` bytes, the build options and pybuild's own
code. `lookup()` re-checks the bases against the tag index and the context checksums through the
stat cache; when all match and the image is still stored, the build is done: no lark, no graph,
no store objects, no solver. Anything else (a changed file, a moved tag, `--no-cache`, outputs
other than the image store) takes the normal path, which then refreshes the memo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from builder.errors import StoreError
from builder.util.atomic import write_atomic
from builder.util.sha import sha256

_BUILDER = Path(__file__).parent.parent
# The code that shapes cache keys and the image config (the cache itself does not key on code: a
# hit never re-runs a step, so the memo need not either, beyond what conversion decides): these
# files, and every module of the directories below (one level: a walk of the tree costs ms).
_CODE = [_BUILDER / "build" / name for name in ("convert.py", "graph.py", "solver.py", "job.py", "context.py",
                                                "dockerignore.py", "export.py", "options.py", "runner.py")]
_CODE += [_BUILDER / "cache" / name for name in ("keys.py", "memo.py", "dockerfile.py")]
_CODE += [_BUILDER / "commands" / "build.py", _BUILDER / "oci" / "model.py", _BUILDER / "oci" / "platform.py"]
_CODE_DIRS = (_BUILDER / "build" / "ops", _BUILDER.parent / "grammar")


def _code_stamp() -> str:
    parts = []
    for path in _CODE:
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    for d in _CODE_DIRS:
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.name.endswith((".py", ".lark")):
                st = entry.stat()
                parts.append(f"{d.name}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def memo_key(dockerfile: bytes, dockerfile_name: str, ignore_file: Path | None, options: dict[str, Any]) -> str:
    """The key of a build: everything the result depends on except base images and context content."""
    h = sha256()
    for part in (dockerfile, dockerfile_name.encode(), _read(ignore_file), _code_stamp().encode(),
                 json.dumps(options, sort_keys=True).encode()):
        h.update(sha256(part).digest())
    return h.hexdigest()


def _read(path: Path | None) -> bytes:
    if path is None:
        return b""
    try:
        return path.read_bytes()
    except OSError:
        return b"\0unreadable"


def _path(root: Path, key: str) -> Path:
    return root / "cache" / "memo" / f"{key}.json"


def lookup(root: Path, key: str, context: Any, tags: Sequence[str]) -> dict[str, Any] | None:
    """The memo of an identical earlier build whose inputs are all unchanged, else None."""
    try:
        memo = json.loads(_path(root, key).read_bytes())
        index = json.loads((root / "images.json").read_bytes())
    except (OSError, ValueError):
        return None
    if memo.get("image_id") not in index.get("images", {}) and memo.get("image_id") not in index.get("indexes", {}):
        return None
    have = index.get("tags", {})
    if any(have.get(tag) != image_id for tag, image_id in memo["bases"].items()):
        return None
    if memo.get("cli_tags") != list(tags) or any(have.get(t) != memo["image_id"] for t in memo["tags"]):
        return None
    for sources, excludes, checksum in memo["inputs"]:
        try:
            rels = context.resolve_sources(sources)
            if context.checksum(rels, excludes=excludes, reuse=True) != checksum:
                return None
        except Exception:  # noqa: BLE001 - any doubt means: build normally
            return None
    return memo


def save(root: Path, key: str, memo: dict[str, Any]) -> None:
    """Record a successful build's inputs and result (atomically; failures only cost speed)."""
    path = _path(root, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(memo, sort_keys=True).encode(), durable=False)
    except (OSError, StoreError):
        pass
