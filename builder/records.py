"""Build records: one JSON file per build under `<root>/builds/`, for `pybuild explain/analyze`.

The format is documented in docs/build-records.md. Secrets never reach a record: steps carry
only key parts, and key parts hold a secret's id, never its value.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD_VERSION = 1


@dataclass(slots=True)
class StepRecord:
    """One step of a build: its key, whether the cache had it and why not, and what it cost."""

    id: int  # the progress number (#5)
    stage: str
    stage_index: int
    index: int  # 1-based position in its stage
    count: int  # steps in the stage
    instruction: str
    line: int
    end_line: int
    kind: str  # FROM | RUN | COPY | ADD | WORKDIR | CONFIG
    key: str = ""
    key_parts: list[list[Any]] = field(default_factory=list)
    cache: str = "miss"  # hit | miss | none (config-only step, nothing to cache)
    reason: str = ""  # for a miss: "no cache entry", "--no-cache", "--no-cache-filter", ...
    duration: float = 0.0
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0
    output_bytes: int = 0
    layer: dict[str, Any] | None = None  # diff_id, digest, size, media_type
    empty_layer: bool = True
    error: str = ""
    started: float = 0.0  # epoch seconds when the step began (parallel stages overlap)


@dataclass(slots=True)
class BuildRecord:
    """A whole build: inputs, result and steps."""

    id: str
    started: float
    dockerfile: str
    dockerfile_digest: str
    context: str
    target: str = ""
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    platform: str = ""
    status: str = "running"  # ok | failed | cancelled
    error: str = ""
    finished: float = 0.0
    duration: float = 0.0
    image_id: str = ""
    manifest_digest: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    version: int = RECORD_VERSION

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def new_build_id() -> str:
    """Sortable by time: `YYYYmmddTHHMMSS-<8 hex>`."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def records_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "builds"


def write(root: str | os.PathLike[str], record: BuildRecord) -> Path:
    """Write the record atomically as `<root>/builds/<id>.json`."""
    d = records_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{record.id}.json"
    tmp = d / f".{record.id}.json.tmp"
    tmp.write_text(json.dumps(record.as_json(), indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A record as plain JSON data."""
    return json.loads(Path(path).read_text())


def list_records(root: str | os.PathLike[str]) -> list[Path]:
    """Record files, oldest first."""
    return sorted(records_dir(root).glob("*.json"))
