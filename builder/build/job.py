"""What one build's operations work with: the `BuildJob` and the typed state of a step.

    BuildJob(store, cache, context, progress, options, record, images)
        .downloads  ADD URL -> its download (once per build)     .git      ADD git URL -> its commit
        .reads      the context reads of the keys (the memo)     .running  RUN processes, step dirs
    Step(node, stage, sid, parent, layers, stages)     one step to key or run, as the solver sees it
    StageResult                                        what a stage built (layers, history, key)
    StepOutput                                         what running a step made (a layer or none)

Layers travel as the store's `LayerRecord` (diff_id, digest, size, media_type); `layer_json` and
`layer_from_json` convert to and from the dict that cache entries and build records hold.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from builder.build.sources.http import Downloads
from builder.errors import StepError
from builder.oci.model import Digest
from builder.store import LayerRecord

if TYPE_CHECKING:
    from builder.build.context import BuildContext
    from builder.build.graph import Node, Stage
    from builder.build.records import BuildRecord
    from builder.build.sources.ssh import SshAgents
    from builder.cache.keys import BuildCache, CacheKey
    from builder.oci.image import Image, Layer
    from builder.store import Store
    from builder.util.progress import Progress

__all__ = ["BuildJob", "SolveOptions", "Step", "StageResult", "StepOutput", "GitCommits", "ContextReads",
           "Running", "layer_json", "layer_from_json", "as_layer_record"]


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """The build options the solver and the operations use."""

    no_cache: bool = False
    no_cache_filter: frozenset[str] = frozenset()
    jobs: int = 0  # 0: the number of cores
    secrets: dict[str, bytes] = field(default_factory=dict, hash=False)
    pull: bool = False
    network: str = "default"  # --network: the default for RUN steps
    compression: str = "uncompressed"  # layers committed as: gzip | zstd | uncompressed (compressed on push/export)
    compression_level: int | None = None
    ssh: SshAgents | None = field(default=None, hash=False, compare=False)  # the agents of --ssh
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host: (name, ip) for RUN steps' /etc/hosts
    shm_size: int = 0  # --shm-size: bytes of RUN steps' /dev/shm (0: 64 MiB)


# --- layers ------------------------------------------------------------------------------------

def as_layer_record(layer: Layer | LayerRecord) -> LayerRecord:
    """A layer (of an image, or as the store committed it) as the record a build carries."""
    return LayerRecord(Digest(str(layer.diff_id)), Digest(str(layer.digest)), int(layer.size), str(layer.media_type))


def layer_json(layer: LayerRecord) -> dict[str, Any]:
    """The layer as cache entries and build records keep it: diff_id, digest, size, media_type."""
    return {"diff_id": str(layer.diff_id), "digest": str(layer.digest), "size": int(layer.size),
            "media_type": str(layer.media_type)}


def layer_from_json(d: Mapping[str, Any]) -> LayerRecord:
    return LayerRecord(Digest(d["diff_id"]), Digest(d["digest"]), int(d["size"]), str(d["media_type"]))


# --- what a build keeps while it runs ----------------------------------------------------------

class GitCommits:
    """ADD git URL -> the commit its ref names now: asked once per build."""

    def __init__(self) -> None:
        self._commits: dict[str, str] = {}
        self._lock = threading.Lock()
        self.volatile = False  # a branch or tag was resolved: it can move, the no-op memo cannot see it

    def commit(self, url: str, env: Mapping[str, str]) -> str:
        from builder.build.sources import git as gitsource

        with self._lock:
            known = self._commits.get(url)
        if known is None:
            src = gitsource.parse_git_url(url)
            known = gitsource.resolve(src, dict(env))
            with self._lock:
                self._commits[url] = known
                if known != src.ref:
                    self.volatile = True
        return known


class ContextReads:
    """Every context read of the step keys, as [sources, excludes, checksum]: the no-op memo re-checks them."""

    def __init__(self) -> None:
        self.reads: list[list[Any]] = []
        self._lock = threading.Lock()

    def add(self, sources: list[str], excludes: list[str], checksum: str) -> None:
        with self._lock:
            self.reads.append([sources, excludes, checksum])


class Running:
    """What a build has in flight: RUN processes (host pids of their init) and step directories."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self._dirs: set[Path] = set()
        self._lock = threading.Lock()

    def started(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)

    def ended(self, pids: list[int]) -> None:
        with self._lock:
            self._pids.difference_update(pids)

    def kill_all(self) -> None:
        """Kill every RUN process of the build (another stage failed, or Ctrl-C)."""
        with self._lock:
            pids = list(self._pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def add_dir(self, path: Path) -> None:
        """Register a step directory before it is made, so that a Ctrl-C anywhere still finds it."""
        with self._lock:
            self._dirs.add(path)

    def drop_dir(self, path: Path) -> None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            self._dirs.discard(path)

    def remove_dirs(self) -> None:
        """Remove the step directories still there (after a failure or Ctrl-C)."""
        with self._lock:
            dirs = list(self._dirs)
        for path in dirs:
            self.drop_dir(path)


@dataclass(frozen=True)
class BuildJob:
    """One build's services and options, as the operations receive them."""

    store: Store
    cache: BuildCache
    context: BuildContext
    progress: Progress
    options: SolveOptions
    record: BuildRecord
    images: Callable[[str, str], Image]  # (ref, platform) -> a base image: from the store, or pulled
    downloads: Downloads = field(init=False)
    git: GitCommits = field(init=False, default_factory=GitCommits)
    reads: ContextReads = field(init=False, default_factory=ContextReads)
    running: Running = field(init=False, default_factory=Running)

    def __post_init__(self) -> None:
        object.__setattr__(self, "downloads", Downloads(self.tmp_dir))

    @property
    def tmp_dir(self) -> Path:
        """The store's directory for in-flight work (same filesystem as its snapshots)."""
        return self.store.tmp_dir()

    @property
    def volatile(self) -> bool:
        """Whether the build read something the no-op memo cannot re-check (a URL, a git branch)."""
        return self.downloads.volatile or self.git.volatile

    def network(self, requested: str) -> str:
        """The network of a RUN step: its `--network`, else the build's."""
        return requested if requested != "default" else self.options.network

    def git_env(self) -> dict[str, str]:
        """What git needs from the build: the `--ssh default` agent for git@ / ssh:// remotes."""
        sock = self.options.ssh.socket("default") if self.options.ssh is not None else None
        return {"SSH_AUTH_SOCK": sock} if sock else {}

    def close(self) -> None:
        """Remove this build's downloads and whatever step directories a failure left."""
        self.running.remove_dirs()
        self.downloads.close()


# --- steps -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StageResult:
    """What a stage built: its layers (base first), history entries (OCI JSON) and its final key;
    the image config is the stage's (`stage.config`) over its base image's."""

    stage: Stage
    layers: tuple[LayerRecord, ...]
    history: tuple[dict[str, Any], ...]
    key: str
    base_image: Image | None = None  # the store image of an ImageSource base
    created: float = 0.0  # the time of its newest step result


@dataclass(frozen=True, slots=True)
class Step:
    """One step to key or to run: its node, where it stands, and the stage's state before it."""

    node: Node
    stage: Stage
    sid: int  # the progress number
    parent: CacheKey  # the key of the step before (or of the base)
    layers: tuple[LayerRecord, ...]  # the stage's layers so far, base first
    stages: Mapping[int, StageResult]  # the finished stages (COPY --from, RUN --mount from=)

    @property
    def where(self) -> str:
        """The `Dockerfile:LINE: ` prefix of the step's messages."""
        return f"{self.node.origin.filename}:{self.node.origin.line}: "

    def error(self, message: str, *, hint: str | None = None, output_tail: str = "") -> StepError:
        """An error located at the step's instruction (`message` without the `where` prefix)."""
        o = self.node.origin
        return StepError(message, filename=o.filename, line=o.line, column=o.column, source_line=o.text,
                         output_tail=output_tail, hint=hint)


@dataclass(frozen=True, slots=True)
class StepOutput:
    """What running a step made: its layer (None: it changed nothing) and what it cost."""

    layer: LayerRecord | None
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0
    output_bytes: int = 0
