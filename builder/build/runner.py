"""One build from typed options: the no-op memo, then parse, convert, solve, assemble and export.

The cached no-op path stays lean: the memo recognises an unchanged build before any parse (no lark,
no store objects, no solver), and the Dockerfile's parse comes from a pickle keyed by its hash.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from builder.build.options import BuildOptions, BuildResult, Output, validate

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from threading import Event
    from typing import Any
    from builder.build.context import BuildContext
    from builder.build.internal import InternalSteps
    from builder.build.records import BuildRecord
    from builder.build.sources.ssh import SshAgents
    from builder.store import Store
    from builder.util.progress import Progress

__all__ = ["run_build"]


def run_build(options: BuildOptions, progress: Progress, cancel: Event | None = None) -> BuildResult:
    """Build as `options` say, reporting to `progress`; the caller closes `progress`; `cancel` set
    by the caller stops the build (see `builder.build.build`)."""
    from builder.build.context import open_context
    from builder.util.paths import default_root

    started = time.time()
    root = default_root()
    scratch = root / "tmp" / f"context-{os.getpid()}"
    ssh = None
    try:
        if options.ssh:
            from builder.build.sources.ssh import SshAgents

            ssh = SshAgents.parse(list(options.ssh))
        memo_ok = not (options.no_cache or options.no_cache_filter or options.pull or options.cache_from
                       or options.cache_to) and options.outputs == (Output("image"),)
        if not memo_ok:
            validate(options)
        ctx = open_context(options.context, dockerfile=options.dockerfile, stdin=options.stdin, scratch_dir=scratch,
                           frozen=options.frozen_context)
        memo_key = None
        if memo_ok:
            from builder.cache import memo

            memo_key = memo.memo_key(ctx.dockerfile, ctx.dockerfile_name, ctx.ignore_file, {
                "build_args": dict(options.build_args), "target": options.target, "platform": options.platform,
                "labels": dict(options.labels), "network": options.network,
                "epoch": os.environ.get("SOURCE_DATE_EPOCH"),
                **({"allow": sorted(options.allow)} if options.allow else {}),
                **({"extra_hosts": [list(h) for h in options.extra_hosts]} if options.extra_hosts else {}),
                **({"shm_size": options.shm_size} if options.shm_size else {})})
            hit = memo.lookup(root, memo_key, ctx, list(options.tags)) if ctx.root is not None else None
            if hit is not None:  # the options are those of an earlier build that was checked
                return _replay(options, root, ctx, hit, progress, started, _load_steps(ctx, progress), memo_key)
            validate(options)  # not before the memo: it imports the image-name parser
        steps = _load_steps(ctx, progress)
        from builder.cache.dockerfile import load_dockerfile
        from builder.store import Store
        from runtime.userns import enter_rootless

        enter_rootless()  # rootless: the user namespace, now that the build has work to do (before any thread)
        store = Store.open(root)
        df = load_dockerfile(ctx.dockerfile, ctx.dockerfile_name, store.root)
        with store.lease():
            return _build(options, store, ctx, df, progress, started, memo_key, ssh, steps, cancel)
    finally:
        if ssh is not None:
            ssh.close()
        if scratch.exists():
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _new_record(options: BuildOptions, ctx: BuildContext, started: float, platform: str) -> BuildRecord:
    from builder.build import records
    from builder.util.sha import sha256

    if options.dockerfile and options.dockerfile != "-":
        dockerfile = os.path.abspath(options.dockerfile)  # as docs/build-records.md promises: -f is relative to the cwd
    elif ctx.root and options.dockerfile is None:
        dockerfile = str(Path(ctx.root, ctx.dockerfile_name))
    else:
        dockerfile = options.dockerfile or ctx.dockerfile_name
    return records.BuildRecord(
        records.new_build_id(), started, dockerfile, "sha256:" + sha256(ctx.dockerfile).hexdigest(),
        str(ctx.root) if ctx.root else "-", target=options.target or "", tags=list(options.tags),
        build_args=dict(options.build_args), platform=platform)


def _load_steps(ctx: BuildContext, progress: Progress) -> InternalSteps:
    """`[internal] load build definition from Dockerfile` and `[internal] load .dockerignore`."""
    from builder.build.internal import InternalSteps
    from builder.util.units import human_bytes

    steps = InternalSteps(progress)
    steps.step(f"[internal] load build definition from {ctx.dockerfile_name}",
               [f"transferring dockerfile: {human_bytes(len(ctx.dockerfile))} done"])
    try:
        size = ctx.ignore_file.stat().st_size if ctx.ignore_file is not None else 0
    except OSError:
        size = 0
    steps.step("[internal] load .dockerignore", [f"transferring context: {human_bytes(size)} done"])
    steps.shown.clear()  # shown live by every build, the memo keeps only what comes after
    return steps


def _replay(options: BuildOptions, root: Path, ctx: BuildContext, hit: dict[str, Any], progress: Progress,
            started: float, steps: InternalSteps, memo_key: str) -> BuildResult:
    """Finish a build the memo recognised: show every step as cached, write its record."""
    record = _replayed_record(options, ctx, hit, started)
    _show_replay(hit, progress, steps)
    _finish(root, record)
    return BuildResult(hit["image_id"], hit["manifest_digest"], record.id, tuple(hit.get("checks", ())),
                       _replay_data(options, ctx, memo_key, hit))


def _replayed_record(options: BuildOptions, ctx: BuildContext, hit: dict[str, Any], started: float) -> BuildRecord:
    """The record of a build the memo `hit` recognised: every step a cache hit."""
    from builder.build.records import StepRecord

    record = _new_record(options, ctx, started, hit["platform"])
    for step in hit["steps"]:
        record.steps.append(StepRecord(**{**step, "cache": "hit", "reason": "", "duration": 0.0, "cpu_seconds": 0.0,
                                          "memory_peak_bytes": 0, "output_bytes": 0}))
    record.status, record.image_id, record.manifest_digest = "ok", hit["image_id"], hit["manifest_digest"]
    record.images = dict(hit.get("images", {}))
    return record


def _show_replay(hit: dict[str, Any], progress: Progress, steps: InternalSteps) -> None:
    """What a build the memo `hit` recognised shows after the `[internal] load` steps."""
    for w in hit["warnings"]:
        progress.info(f"WARNING: {w}")
    steps.replay(hit.get("internal", []))
    for step in hit["steps"]:
        progress.start(step["id"], hit["names"][str(step["id"])])
        (progress.done if step["kind"] == "FROM" else progress.cached)(step["id"])
        steps.skip_to(step["id"])
    if hit.get("export"):
        name, statuses = hit["export"]
        steps.end(steps.begin(name), statuses, record=False)


def _replay_data(options: BuildOptions, ctx: BuildContext, memo_key: str | None,
                 hit: dict[str, Any] | None) -> dict[str, Any] | None:
    """What `cache.memo.replay_save` keeps so that the same command line is replayed without parsing
    (None when it cannot be: no memo, or a Dockerfile or context from stdin): the events and the
    record `_replay` would make, the context entries the build looked at, the files to re-read."""
    if memo_key is None or hit is None or ctx.root is None or options.stdin is not None or "-" in (
            options.context, options.dockerfile):
        return None
    from builder.build.records import replayable
    from builder.cache.memo import stat_key
    from builder.util.progress import Recorder

    shown = Recorder()
    _show_replay(hit, shown, _load_steps(ctx, shown))
    record = _replayed_record(options, ctx, hit, 0.0)
    record.steps.sort(key=lambda s: s.id)
    stats = dict(ctx.trace)
    for path in (os.path.abspath(options.context), str(ctx.root)):
        stats.setdefault(path, stat_key(path))
    candidates = [record.dockerfile, record.dockerfile + ".dockerignore", os.path.join(ctx.root, ".dockerignore")]
    return {"memo_key": memo_key, "memo": hit, "tags": list(options.tags), "stats": stats, "contents": candidates,
            "record": {"events": shown.events, "record": replayable(record), "image_id": hit["image_id"],
                       "checks": list(hit.get("checks", ()))}}


def _build(options: BuildOptions, store: Store, ctx: BuildContext, df: Any, progress: Progress, started: float,
           memo_key: str | None, ssh: SshAgents | None, steps: InternalSteps,
           cancel: Event | None = None) -> BuildResult:
    from builder.build.convert import Options, convert
    from builder.build.export import assemble, write_outputs
    from builder.build.options import check_entitlements, output_compression
    from builder.build.job import BuildJob, SolveOptions
    from builder.cache.keys import BuildCache

    images: dict[tuple[str, str], Any] = {}

    def image(ref: str, platform: str) -> Any:
        """A base image: from the store (no registry import), or pulled when missing or with --pull."""
        if (ref, platform) not in images:
            n = steps.begin(f"[internal] load metadata for {_canonical(ref)}")
            try:
                images[ref, platform] = _base_image(store, ref, platform, options.pull)
            except BaseException as exc:
                steps.fail(n, exc)
                raise
            steps.end(n)
        return images[ref, platform]

    def resolve_image(ref: str, platform: str) -> dict[str, Any]:
        return image(ref, platform).config().config.to_dict()

    from builder.oci.platform import parse_list

    targets = parse_list(options.platform) or [""]  # "" : this machine's, as a plain build always was
    graphs = [convert(df, Options(dict(options.build_args), options.target, target, dict(options.labels)),
                      resolve_image) for target in targets]
    graph = graphs[0]
    check_entitlements(graph, options.allow)
    _check_emulation(graphs)
    checks = _run_checks(options, ctx, df, graph, images, progress)
    for w in graph.warnings:
        progress.info(f"WARNING: {w}")
    record = _new_record(options, ctx, started, ",".join(g.stages[g.target].platform for g in graphs))
    compression, level = output_compression(options.outputs)
    opts = SolveOptions(options.no_cache, frozenset(options.no_cache_filter), options.jobs, dict(options.secrets),
                        options.pull, options.network, compression or "uncompressed", level, ssh,
                        options.extra_hosts, options.shm_size)
    cache = BuildCache(store.root)
    job = BuildJob(store, cache, ctx, progress, opts, record, image)
    _load_context(ctx, graph, steps)
    solvers = _solvers(graphs, targets, job, steps.n)
    steps.skip_to(max((n for sv in solvers for n in sv.numbers.values()), default=steps.n))
    finished = _watch_cancel(cancel, solvers)
    try:
        if options.cache_from:
            from builder.cache.export import import_cache

            for spec in options.cache_from:
                progress.info(f"importing cache from {spec.ref or spec.path}: {import_cache(store, cache, spec)} entries")
        export_name = _export_name(options.outputs)
        if len(solvers) == 1:
            built = assemble(store, solvers[0].solve())
            n = steps.begin(export_name)
            try:
                manifest_digest = write_outputs(store, built, options.outputs, options.tags, progress, compression,
                                                level)
            except BaseException as exc:
                steps.fail(n, exc)
                raise
            result_id = str(built.id)
        else:
            from builder.build.export import write_index_outputs

            results = _solve_all(solvers)
            n = steps.begin(export_name)
            try:
                made = [assemble(store, r) for r in results]
                record.images = {str(image.config().platform): str(image.id) for image in made}
                manifest_digest = write_index_outputs(store, made, options.outputs, options.tags, progress,
                                                      compression, level)
            except BaseException as exc:
                steps.fail(n, exc)
                raise
            result_id = str(manifest_digest)
        export = _export_statuses(options, result_id, str(manifest_digest))
        steps.end(n, export, record=False)
        if options.cache_to:
            from builder.cache.export import export_cache, keys_for_mode

            for spec in options.cache_to:
                export_cache(store, cache, keys_for_mode(record.steps, graph.target, spec.mode), spec)
                progress.info(f"exported cache to {spec.ref or spec.path}")
    except BaseException as exc:
        record.status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.error = (getattr(exc, "message", None) or str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        _finish(store.root, record)
        raise
    finally:
        finished.set()
        solvers[0].close()
    record.status, record.image_id, record.manifest_digest = "ok", result_id, str(manifest_digest)
    _finish(store.root, record)
    saved = None
    if memo_key is not None and ctx.root is not None and not solvers[0].volatile:
        names = {k: v for solver in solvers for k, v in solver.names.items()}
        saved = _save_memo(store, memo_key, options, images, solvers[0].inputs, names, record, graph.warnings, checks,
                           steps.shown, [export_name, export])
    return BuildResult(result_id, str(manifest_digest), record.id, checks, _replay_data(options, ctx, memo_key, saved))


def _check_emulation(graphs: list[Any]) -> None:
    """Every platform some RUN step runs for can run here (natively or emulated), before anything runs."""
    from builder.build.emulation import check
    from builder.build.graph import Exec

    check(sorted({st.platform for g in graphs for st in g.stages.values()
                  if st.platform and any(isinstance(n.op, Exec) for n in st.nodes)}))


def _solvers(graphs: list[Any], targets: list[str], job: Any, first: int = 0) -> list[Any]:
    """One solver per target platform, numbering steps after `first` (the [internal] steps); the
    stages all graphs have identically (with the same stages below them) are built once between them;
    at most `--jobs` stages run at once across platforms, native platforms' stages first."""
    import threading

    from builder.build.solver import SharedStages, Solver, StageSlots

    if len(graphs) == 1:
        return [Solver(graphs[0], job, first=first)]
    shared: set[int] = set()
    for idx in graphs[0].order():
        stage = graphs[0].stages[idx]
        if stage.deps() <= shared and all(g.stages.get(idx) == stage for g in graphs[1:]):
            shared.add(idx)
    common, cancel, solvers = SharedStages(shared), threading.Event(), []
    slots = StageSlots(job.options.jobs or os.cpu_count() or 1)  # --jobs counts the stages of every platform
    for graph, target in zip(graphs, targets):
        solver = Solver(graph, job, first=first, label=target, shared=common, cancel=cancel, slots=slots)
        first = solver.last
        solvers.append(solver)
    return solvers


def _watch_cancel(cancel: Event | None, solvers: list[Any]) -> Event:
    """Stop the solvers when the caller sets `cancel` (a server whose client left): no step starts,
    the running processes are killed, even a step printing nothing. Returns the event that ends the
    watch (set it when the build is over)."""
    import threading

    finished = threading.Event()

    def watch() -> None:
        assert cancel is not None
        while not finished.is_set():
            if cancel.wait(0.2):
                for solver in solvers:
                    solver.cancel.set()
                solvers[0].job.running.kill_all()
                return

    if cancel is not None:
        threading.Thread(target=watch, name="cancel-watch", daemon=True).start()
    return finished


def _solve_all(solvers: list[Any]) -> list[Any]:
    """Solve every platform's graph (threads; each solver runs its stages in parallel too): the platforms
    this machine runs natively first, at once; the emulated ones once those are done, at once. On two
    cores, emulated RUN steps beside native ones (their containers' setup in the kernel, qemu, their
    Python work) made the native half 15-25% slower than a build of it alone, whatever their priority;
    after it, the native half is as fast as alone and the whole build ~15-40% longer (bench/multiplatform.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from builder.build.emulation import native
    from builder.build.solver import Cancelled

    with ThreadPoolExecutor(max_workers=len(solvers), thread_name_prefix="platform") as pool:
        first = {s: pool.submit(s.solve) for s in solvers if native(s.label)}

        def after_native(solver: Any) -> Any:
            for future in first.values():
                if future.exception() is not None:  # waits; a native platform failed: the build stops
                    raise Cancelled("cancelled")
            return solver.solve()

        futures = [first[s] if s in first else pool.submit(after_native, s) for s in solvers]
        try:
            return [f.result() for f in futures]
        except BaseException:
            solvers[0].cancel.set()
            solvers[0].job.running.kill_all()
            raise


def _run_checks(options: BuildOptions, ctx: BuildContext, df: Any, graph: Any, images: dict[tuple[str, str], Any],
                progress: Progress) -> tuple[str, ...]:
    """The build checks over the stages this build reaches (as buildx runs them with a build);
    with `# check=error=true` a violation fails the build before its first step."""
    from builder.build.checks import lint
    from builder.build.checks.run import base_info
    from builder.errors import StepError

    def base_image(ref: str, platform: str) -> Any:
        for (r, p), image in images.items():
            if r == ref and (p == platform or not platform):
                return base_info(image)
        return None

    text = ctx.dockerfile.decode("utf-8", "replace")
    result = lint(df, text, build_args=options.build_args, reachable=set(graph.stages),
                  target_platform=graph.stages[graph.target].platform, base_image=base_image, ignore=ctx.ignore)
    if result.error:
        for v in result.violations:
            progress.info(f"WARNING: {v.short()}")
        first = result.violations[0]
        lines = text.splitlines()
        raise StepError(result.error, filename=first.filename, line=first.line, column=first.column,
                        source_line=lines[first.line - 1] if first.line <= len(lines) else None,
                        hint="fix the warnings above, or skip their rules: # check=skip=RULE")
    return tuple(v.short() for v in result.violations)


def _save_memo(store: Store, key: str, options: BuildOptions, images: dict[tuple[str, str], Any],
               inputs: list[list[Any]], names: dict[int, str], record: BuildRecord, warnings: list[str],
               checks: tuple[str, ...] = (), internal: list[list[object]] | None = None,
               export: list[object] | None = None) -> dict[str, Any] | None:
    """Remember this build's inputs so that an identical rebuild skips parsing and solving (the memo
    kept, or None)."""
    from builder.cache import memo
    from builder.errors import BuildError
    from builder.oci.reference import normalize_tag

    bases = {}
    for (ref, platform), image in images.items():
        try:
            tag = normalize_tag(ref)
        except BuildError:
            return None  # a base by digest: not a tag we can re-check cheaply
        target = store.tags().get(tag)
        if target is None or (target != image.id and store.index(tag) is None):
            return None  # the tag no longer names what the build used: nothing to re-check it against
        bases[tag] = str(target)  # an image id, or the digest of the index the platform's image came from
    data = {
        "bases": bases, "inputs": inputs, "image_id": record.image_id,
        "manifest_digest": record.manifest_digest, "tags": [normalize_tag(t) for t in options.tags],
        "cli_tags": list(options.tags), "warnings": warnings, "checks": list(checks),
        "internal": internal or [], "export": export,
        "platform": record.platform, "images": record.images, "names": {str(k): v for k, v in names.items()},
        "steps": [s.as_json() for s in record.steps]}
    return data if memo.save(store.root, key, data) else None


def _base_image(store: Store, ref: str, platform: str, pull: bool) -> Any:
    """The base for `platform` ("" = this machine's, whatever the local image is for): from the store
    (an index gives its image for the platform), else pulled. A local image for another platform is
    an error naming the platform it has, unless it came from a registry, which may have the other one."""
    from builder.errors import StoreError
    from builder.oci.platform import PlatformError, parse

    if not pull:
        try:
            return store.resolve(ref, parse(platform) if platform else None)
        except StoreError:
            pass
        except PlatformError:
            if not store.repo_digests(store.resolve(ref).id):
                raise
    from builder.transfer import ensure_image

    return ensure_image(store, ref, platform or None, pull_always=pull)


def _finish(root: Path, record: BuildRecord) -> None:
    from builder.build import records

    record.finished = time.time()
    record.duration = round(record.finished - record.started, 6)
    record.steps.sort(key=lambda s: s.id)
    records.write(root, record)


def _canonical(ref: str) -> str:
    """`busybox` -> `docker.io/library/busybox:latest`, as BuildKit names what it resolves."""
    from builder.errors import BuildError
    from builder.oci.reference import parse_reference

    try:
        parsed = parse_reference(ref)
    except BuildError:
        return ref
    return str(parsed if parsed.digest else parsed.with_default_tag())


_EXPORTERS = {"image": "exporting to image", "registry": "exporting to image", "oci": "exporting to oci image format",
              "docker": "exporting to docker image format", "local": "exporting to client directory",
              "tar": "exporting to client tarball"}


def _export_name(outputs: tuple[Output, ...]) -> str:
    return _EXPORTERS.get(outputs[0].type, "exporting") if outputs else "exporting"


def _export_statuses(options: BuildOptions, image_id: str, manifest_digest: str) -> list[str]:
    """The status lines of the export step, as BuildKit prints them."""
    out = ["exporting layers done"]
    for o in options.outputs:
        if o.type == "image":
            out.append(f"writing image {image_id} done")
            names = list(options.tags) + [n for n in o.get("name").split(",") if n and n not in options.tags]
            out += [f"naming to {_canonical(n)} done" for n in names]
        elif o.type == "registry":
            names = [n for n in o.get("name").split(",") if n] or list(options.tags)
            out += [f"pushing manifest for {_canonical(n)}@{manifest_digest} done" for n in names]
        elif o.type in ("oci", "docker", "tar"):
            out.append(f"sending tarball {o.get('dest')} done")
        elif o.type == "local":
            out.append(f"copying files to {o.get('dest')} done")
    return out


def _load_context(ctx: BuildContext, graph: Any, steps: InternalSteps) -> None:
    """`[internal] load build context`: read (checksum) every context file a COPY/ADD takes, once,
    before the first step; the steps' keys then reuse these walks."""
    from builder.build.graph import FileCopy
    from builder.util.units import human_bytes
    from builder.build.ops.copy import is_url
    from builder.errors import BuildError

    reads = []
    for idx in graph.order():
        for node in graph.stages[idx].nodes:
            op = node.op
            if isinstance(op, FileCopy) and op.from_stage is None and not op.from_image and not op.git:
                local = [src for src in op.sources if not (op.kind == "ADD" and is_url(src))]
                if local:
                    reads.append((local, op.excludes))
    if not reads or ctx.root is None:
        return
    n = steps.begin("[internal] load build context")
    try:
        for sources, excludes in reads:
            try:
                ctx.checksum(ctx.resolve_sources(sources), excludes=excludes, reuse=True)
            except BuildError:
                continue  # the COPY step reports it, located
    except BaseException as exc:  # Ctrl-C in a large context, an unreadable file
        steps.fail(n, exc)
        raise
    steps.end(n, [f"transferring context: {human_bytes(ctx.walked_bytes())} done"])
