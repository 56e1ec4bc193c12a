"""Build records: one JSON file per build under `<root>/builds/`, for `pybuild explain/analyze`.

The format is documented in docs/build-records.md. Secrets never reach a record: steps carry
only key parts, and key parts hold a secret's id, never its value.
"""

from __future__ import annotations

import os
import time

from builder.util.atomic import write_atomic

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

# no json or pathlib at import: the replay of a no-op rebuild writes its record through `write_replayed`

RECORD_VERSION = 1


class _Record:
    """A plain mutable record with typed fields (no dataclasses import: the no-op rebuild writes a
    record and must start fast). Subclasses list their fields in `__slots__`, in JSON order."""

    __slots__: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, list):
                value = [v.as_json() if isinstance(v, _Record) else v for v in value]
            out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Record) and type(other) is type(self) and self.as_json() == other.as_json()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class StepRecord(_Record):
    """One step of a build: its key, whether the cache had it and why not, and what it cost."""

    __slots__ = ("id", "stage", "stage_index", "index", "count", "instruction", "line", "end_line", "kind", "key",
                 "key_parts", "cache", "reason", "duration", "cpu_seconds", "memory_peak_bytes", "output_bytes",
                 "layer", "empty_layer", "error", "started", "platform")

    def __init__(self, id: int, stage: str, stage_index: int, index: int, count: int, instruction: str, line: int,
                 end_line: int, kind: str, key: str = "", key_parts: list[Any] | None = None, cache: str = "miss",
                 reason: str = "", duration: float = 0.0, cpu_seconds: float = 0.0, memory_peak_bytes: int = 0,
                 output_bytes: int = 0, layer: dict[str, Any] | None = None, empty_layer: bool = True,
                 error: str = "", started: float = 0.0, platform: str = "") -> None:
        self.id = id  # the progress number (#5)
        self.stage, self.stage_index = stage, stage_index
        self.index = index  # 1-based position in its stage
        self.count = count  # steps in the stage
        self.instruction, self.line, self.end_line = instruction, line, end_line
        self.kind = kind  # FROM | RUN | COPY | ADD | WORKDIR
        self.key = key
        self.key_parts: list[Any] = list(key_parts or [])
        self.cache = cache  # hit | miss
        self.reason = reason  # for a miss: "no cache entry", "--no-cache", "--no-cache-filter", "cancelled"
        self.duration, self.cpu_seconds = duration, cpu_seconds
        self.memory_peak_bytes, self.output_bytes = memory_peak_bytes, output_bytes
        self.layer = dict(layer) if layer is not None else None  # diff_id, digest, size, media_type
        self.empty_layer, self.error = empty_layer, error
        self.started = started  # epoch seconds when the step began (parallel stages overlap)
        self.platform = platform  # a multi-platform build's step: the platform it builds for, else ""


class BuildRecord(_Record):
    """A whole build: inputs, result and steps."""

    __slots__ = ("id", "started", "dockerfile", "dockerfile_digest", "context", "target", "tags", "build_args",
                 "platform", "status", "error", "finished", "duration", "image_id", "manifest_digest", "steps",
                 "version", "images")

    def __init__(self, id: str, started: float, dockerfile: str, dockerfile_digest: str, context: str,
                 target: str = "", tags: list[str] | None = None, build_args: dict[str, str] | None = None,
                 platform: str = "", status: str = "running", error: str = "", finished: float = 0.0,
                 duration: float = 0.0, image_id: str = "", manifest_digest: str = "",
                 steps: list[StepRecord] | None = None, version: int = RECORD_VERSION,
                 images: dict[str, str] | None = None) -> None:
        self.id, self.started, self.dockerfile, self.dockerfile_digest = id, started, dockerfile, dockerfile_digest
        self.context, self.target, self.platform = context, target, platform
        self.tags: list[str] = list(tags or [])
        self.build_args: dict[str, str] = dict(build_args or {})
        self.status = status  # running | ok | failed | cancelled
        self.error, self.finished, self.duration = error, finished, duration
        self.image_id, self.manifest_digest = image_id, manifest_digest
        self.steps: list[StepRecord] = list(steps or [])
        self.version = version
        self.images: dict[str, str] = dict(images or {})  # a multi-platform build's: platform -> image id


def new_build_id() -> str:
    """Sortable by time, to the microsecond: `YYYYmmddTHHMMSS.ffffff-<8 hex>`."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
    return f"{stamp}.{now // 1000 % 1_000_000:06d}-{os.urandom(4).hex()}"


def records_dir(root: str | os.PathLike[str]) -> Path:
    from pathlib import Path

    return Path(root) / "builds"


def write(root: str | os.PathLike[str], record: BuildRecord) -> Path:
    """Write the record atomically as `<root>/builds/<id>.json`."""
    import json
    from pathlib import Path

    # no indent: the C encoder (1.7 -> 0.3 ms)
    return Path(_write(root, record.id, json.dumps(record.as_json(), sort_keys=True)))


def replayable(record: BuildRecord) -> str:
    """The record's JSON without what differs between replays of it (id and times): `write_replayed`'s input."""
    import json

    data = record.as_json()
    for name in _PER_RUN:
        del data[name]
    return json.dumps(data, sort_keys=True)


_PER_RUN = ("duration", "finished", "id", "started")


def write_replayed(root: str | os.PathLike[str], replayable_json: str, started: float) -> str:
    """Write the record of a replayed build: `replayable(record)` with a new id and this run's times."""
    finished = time.time()
    build_id = new_build_id()
    head = (f'{{"duration": {round(finished - started, 6)!r}, "finished": {finished!r}, "id": "{build_id}", '
            f'"started": {started!r}, ')  # what json.dumps writes for these (floats by repr, an ASCII id)
    return _write(root, build_id, head + replayable_json[1:])


def _write(root: str | os.PathLike[str], build_id: str, text: str) -> str:
    d = os.path.join(root, "builds")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{build_id}.json")
    write_atomic(path, text.encode(), durable=False)  # not durable: a record lost to a crash loses only history
    return path


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A record as plain JSON data."""
    import json

    with open(path, encoding="utf-8") as f:
        return json.loads(f.read())


def list_records(root: str | os.PathLike[str]) -> list[Path]:
    """Record files, oldest first."""
    return sorted(records_dir(root).glob("*.json"))
