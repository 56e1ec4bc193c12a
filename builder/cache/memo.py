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

The same command line is then replayed without even parsing it: `replay_key`, `replay_lookup`,
`replay_save` (below; the format is in docs/build-records.md).
"""

from __future__ import annotations

import os

from builder.util.sha import sha256

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Mapping, Sequence

# No pathlib, json or re at import: the replay (below) runs before argparse, on this module alone.
_BUILDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The code that shapes cache keys and the image config (the cache itself does not key on code: a
# hit never re-runs a step, so the memo need not either, beyond what conversion decides): these
# files, and every module of the directories below (one level: a walk of the tree costs ms).
_CODE = [os.path.join(_BUILDER, "build", name) for name in ("convert.py", "graph.py", "solver.py", "job.py",
                                                             "context.py", "dockerignore.py", "export.py", "options.py",
                                                             "runner.py", "records.py")]
_CODE += [os.path.join(_BUILDER, "cache", name) for name in ("keys.py", "memo.py", "dockerfile.py")]
_CODE += [os.path.join(_BUILDER, *rel) for rel in (("commands", "build.py"), ("oci", "model.py"), ("oci", "platform.py"),
                                                   ("cli.py",))]
_CODE_DIRS = (os.path.join(_BUILDER, "build", "ops"), os.path.join(os.path.dirname(_BUILDER), "grammar"))


def _code_stamp() -> str:
    parts = []
    for path in _CODE:
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}")
    for d in _CODE_DIRS:
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.name.endswith((".py", ".lark")):
                st = entry.stat()
                parts.append(f"{os.path.basename(d)}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def memo_key(dockerfile: bytes, dockerfile_name: str, ignore_file: Path | None, options: dict[str, Any]) -> str:
    """The key of a build: everything the result depends on except base images and context content."""
    import json

    h = sha256()
    for part in (dockerfile, dockerfile_name.encode(), _read(ignore_file), _code_stamp().encode(),
                 json.dumps(options, sort_keys=True).encode()):
        h.update(sha256(part).digest())
    return h.hexdigest()


def _read(path: str | os.PathLike[str] | None) -> bytes:
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b"\0unreadable"


def _path(root: Path, key: str) -> Path:
    return root / "cache" / "memo" / f"{key}.json"


def lookup(root: Path, key: str, context: Any, tags: Sequence[str]) -> dict[str, Any] | None:
    """The memo of an identical earlier build whose inputs are all unchanged, else None."""
    import json

    try:
        memo = json.loads(_path(root, key).read_bytes())
        index = json.loads((root / "images.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not _index_matches(memo, index, tags):
        return None
    for sources, excludes, checksum in memo["inputs"]:
        try:
            rels = context.resolve_sources(sources)
            if context.checksum(rels, excludes=excludes, reuse=True) != checksum:
                return None
        except Exception:  # noqa: BLE001 - any doubt means: build normally
            return None
    return memo


def _index_matches(memo: dict[str, Any], index: dict[str, Any], tags: Sequence[str]) -> bool:
    """The memo's image is still stored, its bases' tags name what it was built on, its tags name it."""
    if memo.get("image_id") not in index.get("images", {}) and memo.get("image_id") not in index.get("indexes", {}):
        return False
    have = index.get("tags", {})
    if any(have.get(tag) != image_id for tag, image_id in memo["bases"].items()):
        return False
    return memo.get("cli_tags") == list(tags) and all(have.get(t) == memo["image_id"] for t in memo["tags"])


def save(root: Path, key: str, memo: dict[str, Any]) -> bool:
    """Record a successful build's inputs and result (atomically; failures only cost speed): whether kept."""
    import json

    from builder.errors import StoreError
    from builder.util.atomic import write_atomic

    path = _path(root, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(memo, sort_keys=True).encode(), durable=False)
    except (OSError, StoreError):
        return False
    return True


# -- the replay: the no-op rebuild of a command line seen before ------------------------------
#
# `lookup()` needs the parsed options, the context and json: argparse, pathlib and re, ~25 ms of
# imports, more than the rest of a no-op rebuild. A command line (argv, cwd, environment, euid and
# pybuild's code) that ended in a memo before has a replay record, checked with os and marshal
# alone before any parsing:
#
#     cache/memo/replay-<hex>   marshal: {"version", "stats": [[path, lstat tuple | None]],
#                               "contents": [[path, sha256 hex | None]], "image_id", ... what the
#                               build showed and recorded (the caller's)}
#
# `stats` are the context paths the memo check looked at (every file and directory a COPY source
# resolved through or walked: a changed, added or removed entry changes one of them); `contents`
# are the Dockerfile, the `.dockerignore` candidates, `images.json` (so any tag moved anywhere is
# a miss) and the memo itself. A record whose context entries changed within a second before it
# was written is not kept (racily clean, as the stat cache), so equal stats mean equal files.

_REPLAY_VERSION = 1
_RACY_NS = 1_000_000_000


def replay_key(argv: Sequence[str], cwd: str, env: Mapping[str, str], euid: int) -> str:
    """The key of a command line: everything a build reads besides files and the store."""
    text = repr((_REPLAY_VERSION, list(argv), cwd, sorted(env.items()), euid, _code_stamp()))
    return sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _replay_path(root: str | os.PathLike[str], key: str) -> str:
    return os.path.join(root, "cache", "memo", f"replay-{key}")


def stat_key(path: str) -> tuple[int, int, int, int, int] | None:
    """What a replay compares of `path` (not following a last symlink): None when it is absent."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode


def content_key(path: str | os.PathLike[str]) -> str | None:
    """The sha256 of a file (following symlinks), None when it is absent; OSError when unreadable."""
    try:
        with open(path, "rb") as f:
            return sha256(f.read()).hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None


def replay_lookup(root: str | os.PathLike[str], key: str) -> dict[str, Any] | None:
    """The replay record of command line `key` when every path it checks is unchanged, else None."""
    import marshal

    try:
        with open(_replay_path(root, key), "rb") as f:
            record = marshal.load(f)
        if not isinstance(record, dict) or record.get("version") != _REPLAY_VERSION:
            return None
        for path, want in record["stats"]:
            if stat_key(path) != want:
                return None
        for path, want in record["contents"]:
            if content_key(path) != want:
                return None
    except (OSError, ValueError, EOFError, TypeError, KeyError):  # a torn or foreign file: a miss
        return None
    return record


def replay_save(root: Path, key: str, memo_key_: str, memo: dict[str, Any], tags: Sequence[str],
                stats: Mapping[str, tuple[int, int, int, int, int] | None], contents: Sequence[str],
                record: dict[str, Any]) -> bool:
    """Keep the replay record of command line `key`, whose build ended in `memo` (saved under
    `memo_key_`): `stats` as the build saw them, `contents` (paths) hashed now, `record` the
    caller's data. Not kept (False) when an entry is racily clean, a file unreadable, or the store's
    index no longer what `memo` says (another build moved a tag meanwhile)."""
    import json
    import marshal
    import time

    from builder.errors import StoreError
    from builder.util.atomic import write_atomic

    racy = time.time_ns() - _RACY_NS
    if any(st is not None and max(st[2], st[3]) >= racy for st in stats.values()):
        return False
    try:
        index_path = os.path.join(root, "images.json")
        with open(index_path, "rb") as f:
            index_bytes = f.read()
        if not _index_matches(memo, json.loads(index_bytes), tags):
            return False
        memo_path = str(_path(root, memo_key_))
        memo_digest = content_key(memo_path)
        if memo_digest is None:
            return False
        checked = [[index_path, sha256(index_bytes).hexdigest()], [memo_path, memo_digest]]
        checked += [[path, content_key(path)] for path in contents]
        data = marshal.dumps({**record, "version": _REPLAY_VERSION, "contents": checked,
                              "stats": [[path, st] for path, st in stats.items()]})
        write_atomic(_replay_path(root, key), data, durable=False)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, StoreError):  # a foreign index: only speed lost
        return False
    return True
