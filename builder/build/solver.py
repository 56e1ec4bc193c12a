"""Walk a BuildGraph: per step a cache hit, or run it; independent stages in parallel.

    Solver(graph, context, store, cache, progress, options, record).solve() -> StageResult

A stage starts once the stages it reads from are done; at most `jobs` stages run at once. A
step's key is made from its op, its parent's key and the content it reads (see
docs/build-records.md); nothing is materialised on disk until a step actually has to run, so a
fully cached build reads only small JSON files. The first failure cancels the other stages
(their running processes are killed) and is raised as a located `StepError`.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from builder.build.ops import exec as steps
from builder.cache.keys import BuildCache, CacheKey
from builder.errors import BuildError, StepError
from builder.build.graph import BuildGraph, Exec, FileCopy, ImageSource, Mkdir, Node, Scratch, Stage, StageRef
from builder.util.progress import Progress
from builder.build.records import BuildRecord, StepRecord
from runtime.errors import SandboxError


@dataclass(frozen=True, slots=True)
class SolveOptions:
    no_cache: bool = False
    no_cache_filter: frozenset[str] = frozenset()
    jobs: int = 0  # 0: the number of cores
    secrets: dict[str, bytes] = field(default_factory=dict, hash=False)
    pull: bool = False
    network: str = "default"  # --network: the default for RUN steps
    compression: str = "uncompressed"  # layers committed as: gzip | zstd | uncompressed (compressed on push/export)
    compression_level: int | None = None
    ssh: Any = field(default=None, hash=False, compare=False)  # sshforward.SshAgents of --ssh


@dataclass(slots=True)
class StageResult:
    """What a stage built: its layers (base first), history, config, and its final key."""

    stage: Stage
    layers: list[dict[str, Any]]  # diff_id, digest, size, media_type
    history: list[dict[str, Any]]
    config: dict[str, Any]  # the ImageConfig JSON (architecture, os, config, rootfs, history)
    key: str
    base_image: Any = None  # the store Image of an ImageSource base
    created: float = 0.0  # the time of its newest step result


class Cancelled(BuildError):
    """Another stage failed; this one stopped."""


class Solver:
    """Builds the stages of a graph into StageResults."""

    def __init__(self, graph: BuildGraph, context: Any, store: Any, cache: BuildCache, progress: Progress,
                 options: SolveOptions, record: BuildRecord, images: Callable[[str, str], Any]) -> None:
        self.graph, self.context, self.store, self.cache = graph, context, store, cache
        self.images = images  # (ref, platform) -> Image: from the store, or pulled
        self.progress, self.opts, self.record = progress, options, record
        self.results: dict[int, StageResult] = {}
        self.inputs: list[list[Any]] = []  # [sources, excludes, checksum] of every context read
        self.names: dict[int, str] = {}  # step number -> progress name
        self.fetched: dict[str, Any] = {}  # ADD URL -> copyops.FetchedFile
        self.fetch_dir: Any = None
        self.git_commits: dict[str, str] = {}  # ADD git URL -> the commit its ref names
        self.volatile = False  # an input the no-op memo cannot re-check (an ADD URL without --checksum)
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.next_id = 0
        self.numbers: dict[tuple[int, int], int] = {}
        self._number_steps()

    def _number_steps(self) -> None:
        """BuildKit-style numbers: `#N`, given in stage order so that logs read top to bottom."""
        n = 0
        for idx in self.graph.order():
            stage = self.graph.stages[idx]
            for pos in range(len([x for x in stage.nodes if x.makes_layer]) + 1):
                n += 1
                self.numbers[(idx, pos)] = n

    # --- scheduling -------------------------------------------------------------------------------

    def solve(self) -> StageResult:
        order = self.graph.order()
        if len(order) == 1:
            self._build_stage(self.graph.stages[order[0]])
            return self.results[self.graph.target]
        jobs = self.opts.jobs or os.cpu_count() or 1
        pending = {i: self.graph.stages[i].deps() for i in order}
        running: dict[Future[None], int] = {}
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stage") as pool:
            try:
                while pending or running:
                    ready = [i for i, deps in pending.items() if deps <= set(self.results)]
                    for i in ready:
                        del pending[i]
                        running[pool.submit(self._build_stage, self.graph.stages[i])] = i
                    if not running:
                        raise BuildError("internal error: stages wait on each other")
                    done, _ = wait(running, return_when=FIRST_COMPLETED)  # a finished stage may unblock others
                    for fut in done:
                        del running[fut]
                        fut.result()
            except BaseException:
                self.cancel.set()
                steps.cancel_all()
                wait(running)
                raise
        return self.results[self.graph.target]

    # --- one stage --------------------------------------------------------------------------------

    def _step_name(self, stage: Stage, pos: int, count: int, text: str) -> str:
        label = stage.label + " " if len(self.graph.stages) > 1 or stage.name else ""
        return f"[{label}{pos}/{count}] {text}"

    def _build_stage(self, stage: Stage) -> None:
        layer_nodes = [n for n in stage.nodes if n.makes_layer]
        count = len(layer_nodes) + 1
        sid = self.numbers[(stage.index, 0)]
        t0 = time.monotonic()
        self.names[sid] = self._step_name(stage, 1, count, stage.origin.text.strip() or "FROM")
        self.progress.start(sid, self.names[sid])
        state = self._base(stage)
        rec = StepRecord(sid, stage.label, stage.index, 1, count, stage.origin.text.strip(), stage.origin.line,
                         stage.origin.end_line or stage.origin.line, "FROM", key=state.key.digest,
                         key_parts=state.key_parts, cache="hit", empty_layer=True,
                         duration=round(time.monotonic() - t0, 6), started=time.time())
        self._add_record(rec)
        self.progress.done(sid)
        pos = 1
        for node in stage.nodes:
            if self.cancel.is_set():
                raise Cancelled("cancelled")
            if not node.makes_layer:
                if node.created_by:  # ONBUILD leaves no history entry (BuildKit)
                    state.history.append(_history(node, empty=True, created=state.created))
                continue
            pos += 1
            self._step(stage, state, node, pos, count)
        self.results[stage.index] = StageResult(stage, state.layers, state.history, {}, state.key.digest,
                                                state.base_image, state.created)

    def _base(self, stage: Stage) -> "_State":
        base = stage.base
        if isinstance(base, Scratch):
            return _State([], [], CacheKey.make(base={"scratch": True}), created=self.record.started)
        if isinstance(base, StageRef):
            src = self.results[base.index]
            return _State(list(src.layers), list(src.history), CacheKey.make(base={"stage": src.key}),
                          src.base_image, created=src.created)
        assert isinstance(base, ImageSource)
        image = self.images(base.ref, base.platform)
        layers = [steps.layer_dict(layer) for layer in image.layers()]
        history = [h.to_dict() for h in image.config().history]
        return _State(layers, history, CacheKey.make(base={"image": base.ref, "digest": str(image.digest)}), image,
                      created=_parse_time(image.config().created))

    def _uses_cache(self, stage: Stage) -> tuple[bool, str]:
        if self.opts.no_cache:
            return False, "--no-cache"
        if stage.name in self.opts.no_cache_filter or str(stage.index) in self.opts.no_cache_filter:
            return False, "--no-cache-filter"
        return True, ""

    def _step(self, stage: Stage, state: "_State", node: Node, pos: int, count: int) -> None:
        sid = self.numbers[(stage.index, pos - 1)]
        kind = {Exec: "RUN", Mkdir: "WORKDIR"}.get(type(node.op), getattr(node.op, "kind", "CONFIG"))
        rec = StepRecord(sid, stage.label, stage.index, pos, count, node.instruction, node.origin.line,
                         node.origin.end_line or node.origin.line, kind, started=time.time())
        self.names[sid] = self._step_name(stage, pos, count, node.instruction)
        self.progress.start(sid, self.names[sid])
        t0 = time.monotonic()
        try:
            key = self._key(stage, state, node)
            rec.key, rec.key_parts = key.digest, key.as_json()
            use_cache, rec.reason = self._uses_cache(stage)
            entry = self.cache.get(key) if use_cache else None
            if entry is not None and (entry.layer is None or self.store.has_blob(entry.layer["digest"])):
                rec.cache, rec.layer = "hit", entry.layer
                state.created = max(state.created, entry.created)
                self.progress.cached(sid)
            else:
                if use_cache:
                    rec.reason = "no cache entry"
                result = steps.run_node(node, stage, state, self, sid)
                rec.cpu_seconds, rec.memory_peak_bytes = result.cpu_seconds, result.memory_peak_bytes
                rec.output_bytes, rec.layer = result.output_bytes, result.layer
                state.created = self.cache.put(key, result.layer, time.monotonic() - t0).created
                self.progress.done(sid)
        except BaseException as exc:
            rec.cache, rec.error = "miss", _one_line(exc)
            rec.duration = round(time.monotonic() - t0, 6)
            self._add_record(rec)
            cancelled = isinstance(exc, Cancelled) or self.cancel.is_set()
            if cancelled:
                rec.reason = "cancelled"
            self.progress.error(sid, "cancelled" if cancelled else rec.error)
            if isinstance(exc, (BuildError, SandboxError)) and not isinstance(exc, (StepError, Cancelled)):
                where = f"{node.origin.filename}:{node.origin.line}: "
                raise StepError(exc.message.removeprefix(where), filename=node.origin.filename,
                                line=node.origin.line, column=node.origin.column, source_line=node.origin.text,
                                hint=exc.hint) from exc
            raise
        rec.duration = round(time.monotonic() - t0, 6)
        rec.empty_layer = rec.layer is None
        self._add_record(rec)
        state.key = key
        state.key_parts = key.as_json()
        if rec.layer is not None:
            state.layers.append(rec.layer)
        state.history.append(_history(node, empty=rec.layer is None, created=state.created))

    def _add_record(self, rec: StepRecord) -> None:
        with self.lock:
            self.record.steps.append(rec)

    # --- keys -----------------------------------------------------------------------------------

    def _key(self, stage: Stage, state: "_State", node: Node) -> CacheKey:
        op = node.op
        parent = state.key.digest
        if isinstance(op, Exec):
            mounts = [m.key_part() for m in op.mounts]
            for part, m in zip(mounts, op.mounts):
                if m.type == "bind":
                    part["content"] = self._content(stage, m.source_stage, m.source_image, [m.source or "/"],
                                                    node, ())
            from builder.build.convert import PROXY_ARGS

            env = [[k, v] for k, v in op.env if k not in PROXY_ARGS or (k, v) in op.build_args]
            return CacheKey.make(parent=parent, op={"kind": "RUN", "argv": list(op.argv), "security": op.security},
                                 env=env, user=op.user, cwd=op.cwd, network=self._network(op),
                                 mounts=mounts or None)
        if isinstance(op, Mkdir):
            return CacheKey.make(parent=parent, op={"kind": "WORKDIR", "path": op.path, "user": op.user})
        assert isinstance(op, FileCopy)
        desc = {"kind": op.kind, "sources": list(op.sources), "dest": op.dest, "cwd": op.cwd,
                "chown": op.chown, "chmod": op.chmod, "link": op.link, "parents": op.parents,
                "excludes": list(op.excludes), "checksum": op.checksum, "from_image": op.from_image,
                "heredocs": [list(h) for h in op.heredocs], "user": op.user if op.chown else ""}
        if op.kind == "ADD" and op.git:
            from builder.build.sources.git import redact

            desc["sources"] = [redact(op.sources[0])]  # key parts are stored in build records
            return CacheKey.make(parent=parent, op=desc, git=self._git_key(op))
        local = [s for s in op.sources if not _is_url(s)] if op.kind == "ADD" else list(op.sources)
        from_other = op.from_stage is not None or bool(op.from_image)
        inputs = self._content(stage, op.from_stage, op.from_image, local, node, op.excludes,
                               preserve_owner=from_other and not op.chown) if local else None
        urls = None
        if op.kind == "ADD" and not op.checksum and any(_is_url(s) for s in op.sources):
            urls = [self._fetch(u) for u in op.sources if _is_url(u)]  # keyed on what the server sends now
        return CacheKey.make(parent=parent, op=desc, inputs=inputs, urls=urls)

    def git_commit(self, url: str) -> str:
        """The commit an ADD git URL names now (asked once per build)."""
        from builder.build.sources import git as gitsource

        with self.lock:
            known = self.git_commits.get(url)
        if known is None:
            src = gitsource.parse_git_url(url)
            known = gitsource.resolve(src, self.git_env())
            with self.lock:
                self.git_commits[url] = known
                if known != src.ref:
                    self.volatile = True  # a branch or tag can move: the no-op memo cannot see it
        return known

    def git_env(self) -> dict[str, str]:
        """What git needs from the build: the `--ssh default` agent for git@ / ssh:// remotes."""
        sock = self.opts.ssh.socket("default") if self.opts.ssh is not None else None
        return {"SSH_AUTH_SOCK": sock} if sock else {}

    def _git_key(self, op: FileCopy) -> list[Any]:
        from builder.build.sources import git as gitsource

        src = gitsource.parse_git_url(op.sources[0])
        commit = self.git_commit(op.sources[0])
        if op.checksum and op.checksum != commit:
            raise BuildError(f"ADD {src.shown}: {src.ref or 'HEAD'} is commit {commit}, not the --checksum "
                             f"{op.checksum}")
        return [src.shown, commit, src.subdir, op.keep_git_dir]

    def _fetch(self, url: str) -> list[Any]:
        """Download an ADD URL (once per build) for its key; the step reuses the download."""
        from builder.build.files import copyops

        if url not in self.fetched:
            self.volatile = True  # the no-op memo cannot see a remote change
            if self.fetch_dir is None:
                import tempfile
                from pathlib import Path

                self.fetch_dir = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.store.root / "tmp"))
            self.fetched[url] = copyops.fetch_url(url, self.fetch_dir / str(len(self.fetched)))
        f = self.fetched[url]
        return [url, f.digest, f.name, f.mtime]

    def close(self) -> None:
        """Remove this build's downloads and whatever step directories a failure left."""
        steps.remove_workspaces()
        if self.fetch_dir is not None:
            import shutil

            shutil.rmtree(self.fetch_dir, ignore_errors=True)

    def _network(self, op: Exec) -> str:
        return op.network if op.network != "default" else self.opts.network

    def _content(self, stage: Stage, from_stage: int | None, from_image: str, sources: list[str], node: Node,
                 excludes: tuple[str, ...], preserve_owner: bool = False) -> str:
        """Checksum of what a step reads: from the context, another stage, or an image."""
        from builder.build import context as ctxmod

        where = f"{node.origin.filename}:{node.origin.line}: "
        if from_stage is None and not from_image:
            try:
                rels = self.context.resolve_sources(sources, where=where)
                checksum, table = self.context.checksum_table(rels, excludes=excludes, reuse=True)
                with self.lock:  # the no-op memo re-checks `checksum`; the key names the table (for explain)
                    self.inputs.append([list(sources), list(excludes), checksum])
                return self.cache.put_inputs(_relative(table))
            except BuildError as exc:
                raise StepError(exc.message.removeprefix(where), filename=node.origin.filename,
                                line=node.origin.line, column=node.origin.column, source_line=node.origin.text,
                                hint=exc.hint) from None
        view = steps.view_of(self, from_stage, from_image)
        rels = ctxmod.expand_sources(view, sources, where=where)
        table: dict[str, str] = {}
        ctxmod.checksum_sources(view, rels, excludes=excludes, preserve_owner=preserve_owner, table=table)
        return self.cache.put_inputs(_relative(table))


@dataclass(slots=True)
class _State:
    """A stage in progress: layers so far, history so far, and the last key."""

    layers: list[dict[str, Any]]
    history: list[dict[str, Any]]
    key: CacheKey
    base_image: Any = None
    key_parts: list[list[Any]] = field(default_factory=list)
    created: float = 0.0  # when the last layer step's result was made (a hit keeps its old time)

    def __post_init__(self) -> None:
        self.key_parts = self.key.as_json()


def _history(node: Node, *, empty: bool, created: float) -> dict[str, Any]:
    from builder.oci.mutate import rfc3339, source_date_epoch

    epoch = source_date_epoch()
    h: dict[str, Any] = {"created": rfc3339(epoch if epoch is not None else created),
                         "created_by": node.created_by, "comment": "buildkit.dockerfile.v0"}
    if empty:
        h["empty_layer"] = True
    return h


def _relative(table: dict[str, str]) -> dict[str, str]:
    """Inputs tables name files as paths in the context (`./src/a.py` -> `src/a.py`)."""
    return {k[2:] if k.startswith("./") else k: v for k, v in table.items()}


def _parse_time(text: str | None) -> float:
    from datetime import datetime

    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _is_url(source: str) -> bool:
    from builder.build.sources.git import is_download_url

    return is_download_url(source)


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__
