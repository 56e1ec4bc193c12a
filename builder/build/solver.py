"""Walk a BuildGraph: per step a cache hit, or run it; independent stages in parallel.

    Solver(graph, job).solve() -> StageResult

A stage starts once the stages it reads from are done; at most `jobs` stages run at once. A
step's key comes from its operation (`builder.build.ops`: its op, its parent's key and the content
it reads, see docs/build-records.md); nothing is materialised on disk until a step actually has to
run, so a fully cached build reads only small JSON files. The first failure cancels the other
stages (their running processes are killed) and is raised as a located `StepError`. This module
only schedules: it knows no operation, only their keys, their results and the build records.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from builder.build.graph import BuildGraph, ImageSource, Node, Scratch, Stage, StageRef
from builder.build.job import (BuildJob, SolveOptions, StageResult, Step, as_layer_record, layer_from_json,
                               layer_json)
from builder.build.ops import execute, operation_for
from builder.build.records import StepRecord
from builder.cache.keys import CacheKey
from builder.errors import BuildError, StepError
from builder.store import LayerRecord
from runtime.errors import SandboxError

if TYPE_CHECKING:
    from builder.oci.image import Image

__all__ = ["Solver", "SharedStages", "StageSlots", "SolveOptions", "StageResult", "Cancelled"]


class Cancelled(BuildError):
    """Another stage failed; this one stopped."""


class SharedStages:
    """Stages that every platform's graph of a multi-platform build has identically (a `FROM
    --platform=$BUILDPLATFORM` stage that reads no TARGET* ARG): built once, by the first solver
    to reach one; the others wait for its result."""

    def __init__(self, indices: set[int]) -> None:
        self.indices = frozenset(indices)
        self._lock = threading.Lock()
        self._results: dict[int, Future[StageResult]] = {}

    def get(self, index: int, build: Callable[[], StageResult]) -> StageResult:
        with self._lock:
            fut = self._results.get(index)
            owner = fut is None
            if fut is None:
                fut = self._results[index] = Future()
        if not owner:
            return fut.result()
        try:
            result = build()
        except BaseException:
            fut.set_exception(Cancelled("cancelled"))
            raise
        fut.set_result(result)
        return result


class StageSlots:
    """The `jobs` stages a multi-platform build runs at once, across its platforms' solvers. A free
    slot goes to a stage of a platform this machine runs natively before one of an emulated
    platform: the native platform builds as it would alone, emulated stages take what is left."""

    def __init__(self, jobs: int) -> None:
        self._cond = threading.Condition()
        self._free = jobs
        self._native_waiting = 0

    @contextmanager
    def held(self, native: bool) -> Iterator[None]:
        with self._cond:
            self._native_waiting += native
            try:
                while self._free == 0 or (not native and self._native_waiting):
                    self._cond.wait()
            finally:
                self._native_waiting -= native
            self._free -= 1
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()


class Solver:
    """Builds the stages of a graph into StageResults.

    A multi-platform build runs one solver per platform, on one job: `first` numbers its steps
    after the previous solver's, `label` (the platform) prefixes its step names, `shared` holds the
    stages the solvers build once between them, `slots` the stages they run at once, and `cancel`
    stops them all.
    """

    def __init__(self, graph: BuildGraph, job: BuildJob, *, first: int = 0, label: str = "",
                 shared: SharedStages | None = None, cancel: threading.Event | None = None,
                 slots: StageSlots | None = None) -> None:
        self.graph, self.job = graph, job
        self.results: dict[int, StageResult] = {}
        self.names: dict[int, str] = {}  # step number -> progress name
        self.cancel = cancel or threading.Event()
        self.lock = threading.Lock()
        self.numbers: dict[tuple[int, int], int] = {}
        self.label, self.shared, self.slots = label, shared, slots
        self.last = self._number_steps(first)

    @property
    def inputs(self) -> list[list[Any]]:
        """[sources, excludes, checksum] of every context read (the no-op memo re-checks them)."""
        return self.job.reads.reads

    @property
    def volatile(self) -> bool:
        """Whether an input is one the no-op memo cannot re-check (an ADD URL, a git branch)."""
        return self.job.volatile

    def close(self) -> None:
        """Remove this build's downloads and whatever step directories a failure left."""
        self.job.close()

    def _number_steps(self, n: int) -> int:
        """BuildKit-style numbers: `#N`, given in stage order so that logs read top to bottom; returns
        the last number given."""
        for idx in self.graph.order():
            stage = self.graph.stages[idx]
            for pos in range(len([x for x in stage.nodes if x.makes_layer]) + 1):
                n += 1
                self.numbers[(idx, pos)] = n
        return n

    # --- scheduling -------------------------------------------------------------------------------

    def solve(self) -> StageResult:
        order = self.graph.order()
        if len(order) == 1:
            self._build_stage(self.graph.stages[order[0]])
            return self.results[self.graph.target]
        jobs = self.job.options.jobs or os.cpu_count() or 1
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
                self.job.running.kill_all()
                wait(running)
                raise
        return self.results[self.graph.target]

    # --- one stage --------------------------------------------------------------------------------

    def _platform(self, stage: Stage) -> str:
        """The platform a multi-platform build's stage builds for ("" in a single-platform build): the
        solver's, or for a shared `$BUILDPLATFORM` stage the one it runs on."""
        if not self.label:
            return ""
        shared = self.shared is not None and stage.index in self.shared.indices
        return stage.platform if shared else self.label

    def _step_name(self, stage: Stage, pos: int, count: int, text: str) -> str:
        label = stage.label + " " if len(self.graph.stages) > 1 or stage.name else ""
        if self.label:  # buildx: `[linux/arm64 build 2/3] RUN make`; a shared stage by the platform it runs on
            label = f"{self._platform(stage)} {label}"
        return f"[{label}{pos}/{count}] {text}"

    def _build_stage(self, stage: Stage) -> None:
        if self.shared is not None and stage.index in self.shared.indices:
            self.results[stage.index] = self.shared.get(stage.index, lambda: self._build_own(stage))
        else:
            self._build_own(stage)

    def _build_own(self, stage: Stage) -> StageResult:
        if self.slots is None:
            return self._build_stage_steps(stage)
        from builder.build.emulation import native

        here = native(self._platform(stage))
        with self.slots.held(here):
            if self.cancel.is_set():
                raise Cancelled("cancelled")
            return self._build_stage_steps(stage)

    def _build_stage_steps(self, stage: Stage) -> StageResult:
        """Build a stage's steps."""
        layer_nodes = [n for n in stage.nodes if n.makes_layer]
        count = len(layer_nodes) + 1
        sid = self.numbers[(stage.index, 0)]
        t0 = time.monotonic()
        state = self._base(stage)
        self.names[sid] = self._step_name(stage, 1, count, _from_text(stage, state))
        self.job.progress.start(sid, self.names[sid])
        rec = StepRecord(sid, stage.label, stage.index, 1, count, stage.origin.text.strip(), stage.origin.line,
                         stage.origin.end_line or stage.origin.line, "FROM", key=state.key.digest,
                         key_parts=state.key_parts, cache="hit", empty_layer=True,
                         duration=round(time.monotonic() - t0, 6), started=time.time(),
                         platform=self._platform(stage))
        self._add_record(rec)
        self.job.progress.done(sid)
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
        result = self.results[stage.index] = StageResult(stage, tuple(state.layers), tuple(state.history),
                                                         state.key.digest, state.base_image, state.created)
        return result

    def _base(self, stage: Stage) -> _State:
        base = stage.base
        if isinstance(base, Scratch):
            return _State([], [], CacheKey.make(base={"scratch": True}), created=self.job.record.started)
        if isinstance(base, StageRef):
            src = self.results[base.index]
            return _State(list(src.layers), list(src.history), CacheKey.make(base={"stage": src.key}),
                          src.base_image, created=src.created)
        assert isinstance(base, ImageSource)
        image = self.job.images(base.ref, base.platform)
        layers = [as_layer_record(layer) for layer in image.layers()]
        history = [h.to_dict() for h in image.config().history]
        return _State(layers, history, CacheKey.make(base={"image": base.ref, "digest": str(image.id)}), image,
                      created=_parse_time(image.config().created))

    def _uses_cache(self, stage: Stage) -> tuple[bool, str]:
        opts = self.job.options
        if opts.no_cache:
            return False, "--no-cache"
        if stage.name in opts.no_cache_filter or str(stage.index) in opts.no_cache_filter:
            return False, "--no-cache-filter"
        return True, ""

    def _step(self, stage: Stage, state: _State, node: Node, pos: int, count: int) -> None:
        job = self.job
        sid = self.numbers[(stage.index, pos - 1)]
        operation = operation_for(node.op)
        rec = StepRecord(sid, stage.label, stage.index, pos, count, node.instruction, node.origin.line,
                         node.origin.end_line or node.origin.line, operation.kind, started=time.time(),
                         platform=self._platform(stage))
        self.names[sid] = self._step_name(stage, pos, count, node.instruction)
        job.progress.start(sid, self.names[sid])
        t0 = time.monotonic()
        step = Step(node, stage, sid, state.key, tuple(state.layers), self.results)
        layer: LayerRecord | None
        try:
            key = operation.key(job, step)
            rec.key, rec.key_parts = key.digest, key.as_json()
            use_cache, rec.reason = self._uses_cache(stage)
            entry = job.cache.get(key) if use_cache else None
            if entry is not None and (entry.layer is None or job.store.has_blob(entry.layer["digest"])):
                rec.cache, rec.layer = "hit", entry.layer
                layer = layer_from_json(entry.layer) if entry.layer is not None else None
                state.created = max(state.created, entry.created)
                job.progress.cached(sid)
            else:
                if use_cache:
                    rec.reason = "no cache entry"
                result = execute(job, step)
                layer = result.layer
                rec.cpu_seconds, rec.memory_peak_bytes = result.cpu_seconds, result.memory_peak_bytes
                rec.output_bytes, rec.layer = result.output_bytes, layer_json(layer) if layer is not None else None
                state.created = job.cache.put(key, rec.layer, time.monotonic() - t0).created
                job.progress.done(sid)
        except BaseException as exc:
            rec.cache, rec.error = "miss", _one_line(exc)
            rec.duration = round(time.monotonic() - t0, 6)
            self._add_record(rec)
            cancelled = isinstance(exc, (Cancelled, KeyboardInterrupt)) or self.cancel.is_set()  # Ctrl-C too
            if cancelled:
                rec.reason = "cancelled"
            job.progress.error(sid, "cancelled" if cancelled else rec.error)
            if isinstance(exc, (BuildError, SandboxError)) and not isinstance(exc, (StepError, Cancelled)):
                raise step.error(exc.message.removeprefix(step.where), hint=exc.hint) from exc
            raise
        rec.duration = round(time.monotonic() - t0, 6)
        rec.empty_layer = layer is None
        self._add_record(rec)
        state.key = key
        state.key_parts = key.as_json()
        if layer is not None:
            state.layers.append(layer)
        state.history.append(_history(node, empty=layer is None, created=state.created))

    def _add_record(self, rec: StepRecord) -> None:
        with self.lock:
            self.job.record.steps.append(rec)


@dataclass(slots=True)
class _State:
    """A stage in progress: layers so far, history so far, and the last key."""

    layers: list[LayerRecord]
    history: list[dict[str, Any]]
    key: CacheKey
    base_image: Image | None = None
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


def _parse_time(text: str | None) -> float:
    from datetime import datetime

    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _from_text(stage: Stage, state: Any) -> str:
    """The FROM step as BuildKit names it: the base resolved (`FROM docker.io/library/busybox:latest@sha256:...`,
    variables expanded); a stage or scratch base keeps the Dockerfile's text."""
    if isinstance(stage.base, ImageSource) and state.base_image is not None:
        from builder.errors import InvalidReferenceError
        from builder.oci.reference import parse_reference

        try:
            ref = parse_reference(stage.base.ref)
        except InvalidReferenceError:
            return stage.origin.text.strip() or "FROM"
        if ref.digest:
            return f"FROM {ref}"
        return f"FROM {ref.with_default_tag()}@{state.base_image.digest}"
    return stage.origin.text.strip() or "FROM"
