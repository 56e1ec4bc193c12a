"""Run one step for real: RUN in the runtime, COPY/ADD through copyops, WORKDIR as a mkdir.

Each step writes into a fresh upper dir on top of the stage's layer snapshots; the store turns
that directory into a layer (`commit_dir`), and an empty directory means no layer. This is the
only module of the builder that calls the runtime.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import BuildError, StepError
from builder.build.graph import Exec, FileCopy, Mkdir, Node, RunMount, Stage

if TYPE_CHECKING:
    from builder.build.solver import Solver, _State

OUTPUT_TAIL_LINES = 12

_running: set[int] = set()  # host pids of running containers' init, killed by cancel_all()
_running_lock = threading.Lock()


@dataclass(slots=True)
class StepResult:
    layer: dict[str, Any] | None
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0
    output_bytes: int = 0


def layer_dict(layer: Any) -> dict[str, Any]:
    """A layer (store Layer or LayerRecord) as the plain dict the cache and records keep."""
    return {"diff_id": str(layer.diff_id), "digest": str(layer.digest), "size": int(layer.size),
            "media_type": str(layer.media_type)}


def cancel_all() -> None:
    """Kill every RUN process this builder started (another stage failed, or Ctrl-C)."""
    with _running_lock:
        handles = list(_running)
    for pid in handles:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def lower_dirs(solver: "Solver", layers: list[dict[str, Any]], sid: int | None = None) -> list[Path]:
    """Snapshot directories of a layer chain, lowest first (unpacked on first use, with a
    progress bar for step `sid` on a TTY)."""
    task = _byte_task(solver, sid, "unpacking")
    try:
        dirs = solver.store.snapshot_dirs([layer["diff_id"] for layer in layers],
                                          on_bytes=task.update if task is not None else None)
    finally:
        if task is not None:
            task.close()
    return [Path(p) for p in dirs]


def _byte_task(solver: "Solver", sid: int | None, what: str) -> Any:
    """A progress bar for byte work of step `sid`; None when progress draws none (no counting)."""
    if sid is None or not solver.progress.shows_bytes:
        return None
    return solver.progress.bytes_task(sid, what, None)


def view_of(solver: "Solver", from_stage: int | None, from_image: str) -> Any:
    """A RootView of another stage's result or of an image (for COPY --from, RUN --mount from=)."""
    from builder.build.fsview import RootView

    if from_stage is not None:
        layers = solver.results[from_stage].layers
    else:
        from builder.errors import BuildError

        try:
            image = solver.images(from_image, "")
        except BuildError as exc:  # most often a mistyped stage name: say so, not just "pull failed"
            raise BuildError(f"--from={from_image}: no stage of this Dockerfile has that name, and as an "
                             f"image: {exc.message}", hint=exc.hint) from None
        layers = [layer_dict(layer) for layer in image.layers()]
    dirs = lower_dirs(solver, layers)
    if not dirs:
        empty = solver.store.root / "tmp" / "empty-rootfs"
        empty.mkdir(parents=True, exist_ok=True)
        return RootView(empty)
    return RootView(list(reversed(dirs)))


_workspaces: set[Path] = set()  # step workspaces of this process, named before they exist


def _workspace(solver: "Solver") -> Path:
    """A fresh step directory in the store's tmp/. Registered before it is made, so that a
    Ctrl-C landing anywhere in between still finds it (`remove_workspaces`)."""
    path = solver.store.root / "tmp" / f"step-{os.getpid()}-{os.urandom(6).hex()}"
    _workspaces.add(path)
    path.mkdir(mode=0o700)
    return path


def _drop_workspace(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _workspaces.discard(path)


def remove_workspaces() -> None:
    """Remove the step directories this process still has (after a failure or Ctrl-C)."""
    for path in list(_workspaces):
        _drop_workspace(path)


def _commit(solver: "Solver", state: "_State", upper: Path, sid: int | None = None) -> dict[str, Any] | None:
    """Turn an upper dir into a layer; None when the step changed nothing.

    The upper dir already is that layer in overlay form, so it becomes the layer's snapshot
    (renamed into the store's place for it) and the next step does not unpack it again.
    """
    from builder.oci.mutate import source_date_epoch

    if not any(os.scandir(upper)):
        return None
    task = _byte_task(solver, sid, "committing")
    try:
        record = layer_dict(solver.store.commit_dir(upper, compression=solver.opts.compression,
                                                    level=solver.opts.compression_level, epoch=source_date_epoch(),
                                                    on_bytes=task.update if task is not None else None))
    finally:
        if task is not None:
            task.close()
    snap = solver.store.snapshot_path(_chain(state, record))
    if not snap.exists():
        os.chmod(upper, 0o755)
        try:
            os.rename(upper, snap)
        except OSError:
            pass  # another build made it first; it holds the same content
    return record


def _chain(state: "_State", layer: dict[str, Any]) -> str:
    """The chain id of the stage's layers plus `layer` (names the new layer's snapshot)."""
    from builder.oci.model import chain_ids

    return chain_ids([x["diff_id"] for x in state.layers] + [layer["diff_id"]])[-1]


def run_node(node: Node, stage: Stage, state: "_State", solver: "Solver", sid: int) -> StepResult:
    """Run a node whose result the cache did not have."""
    work = _workspace(solver)
    try:
        upper = work / "upper"
        upper.mkdir()
        op = node.op
        reuse = None
        if isinstance(op, Exec):
            result = _run_exec(op, node, state, solver, sid, work, upper)
        elif isinstance(op, FileCopy):
            reuse = _run_copy(op, node, state, solver, work, upper, sid)
            result = StepResult(None)
        elif isinstance(op, Mkdir):
            _run_mkdir(op, state, solver, upper)
            result = StepResult(None)
        else:
            raise BuildError(f"internal error: cannot run {type(op).__name__}")
        result.layer = _commit(solver, state, upper, sid)
        if reuse is not None and reuse.written and result.layer is not None and isinstance(op, FileCopy):
            solver.cache.put_copy_result(_lineage(solver, state, op), _chain(state, result.layer), reuse.written)
        return result
    finally:
        _drop_workspace(work)


def _target_view(solver: "Solver", state: "_State", sid: int | None = None) -> Any:
    from builder.build.fsview import RootView

    dirs = lower_dirs(solver, state.layers, sid)
    return RootView(list(reversed(dirs))) if dirs else None


def _run_mkdir(op: Mkdir, state: "_State", solver: "Solver", upper: Path) -> None:
    from builder.build.files import copyops

    target = _target_view(solver, state)
    parts = [p for p in op.path.split("/") if p]
    for i in range(1, len(parts) + 1):  # BuildKit's MkdirAll: a file in the way is an error, never replaced
        st = target.lstat(target.resolve("/".join(parts[:i]))) if target is not None else None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise BuildError(f"mkdir {'/' + '/'.join(parts[:i])}: not a directory")
    if target is not None and target.lstat(target.resolve(op.path.lstrip("/"))) is not None:
        return
    # BuildKit's mkdir: a USER missing from /etc/passwd owns nothing (root); RUN is where it fails
    owner = copyops.resolve_owner(op.user, target, lenient=True) if op.user else None
    copyops.copy_files(upper, [], op.path.rstrip("/") + "/", target=target, owner=owner)
    # copy_files with no items creates the destination directory and its parents
    if not (upper / op.path.lstrip("/")).exists():
        (upper / op.path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        if owner:
            os.chown(upper / op.path.lstrip("/"), *owner)


def _lineage(solver: "Solver", state: "_State", op: FileCopy) -> str:
    """What makes two runs of a COPY "the same step": the instruction, its parent's key and the
    context directory (a local hint, never part of a cache key)."""
    from builder.cache.keys import sha256_of

    return sha256_of(["copy-lineage", str(solver.context.root), state.key.digest, repr(op)])


def _copy_reuse(solver: "Solver", state: "_State", op: FileCopy) -> Any:
    """A copyops.Reuse for a COPY from the context: the previous result of the same COPY (if its
    snapshot is still there) and the context's stat cache, which knows the unchanged files' digests.
    None where the layer may hold more than copies of context files (heredocs, ADD)."""
    from builder.build.files import copyops
    from builder.build.context import StatCache

    ctx = solver.context
    if op.kind != "COPY" or op.heredocs or op.from_stage is not None or op.from_image or ctx.root is None \
            or ctx.scratch:
        return None
    view = ctx.view
    statcache = StatCache.for_root(view)
    root = str(view.root) + "/"
    cut = len(root)

    def digest_of(host: str, st: os.stat_result) -> bytes | None:
        return statcache.digest(host[cut:], st) if host.startswith(root) else None

    prev = solver.cache.copy_result(_lineage(solver, state, op))
    if prev is not None:
        snap = solver.store.snapshot_path(prev[0])
        if snap.is_dir():
            return copyops.Reuse(str(snap), prev[1], digest_of)
    return copyops.Reuse(None, {}, digest_of)


def _run_copy(op: FileCopy, node: Node, state: "_State", solver: "Solver", work: Path, upper: Path,
              sid: int | None = None) -> Any:
    """Run a COPY/ADD into `upper`; returns the copyops.Reuse it used (None: none)."""
    from builder.build.files import copyops
    from builder.build import context as ctxmod

    where = f"{node.origin.filename}:{node.origin.line}: "
    target = None if op.link else _target_view(solver, state, sid)
    owner = copyops.resolve_owner(op.chown, _target_view(solver, state)) if op.chown else None
    chmod = copyops.parse_chmod(op.chmod) if op.chmod else None
    items: list[Any] = [copyops.HeredocSource(name, content.encode()) for name, content in op.heredocs]
    ignore = None
    if op.git:
        from builder.build.sources import git as gitsource

        url = op.sources[0]
        root = gitsource.checkout(gitsource.parse_git_url(url), solver.git_commit(url), work / "git",
                                  keep_git_dir=op.keep_git_dir, env=solver.git_env())
        copyops.copy_files(upper, ["."], op.dest, src=root, target=target, workdir=op.cwd, owner=owner,
                           chmod=chmod, excludes=op.excludes, link=op.link, where=where)
        return None
    if op.from_stage is not None or op.from_image:
        src = view_of(solver, op.from_stage, op.from_image)
        local = list(op.sources)
    else:
        from builder.build.sources.git import is_download_url

        local = [s for s in op.sources if not (op.kind == "ADD" and is_download_url(s))]
        src = solver.context.view if local else None
        ignore = solver.context.ignore
        for url in (s for s in op.sources if s not in local):
            fetched = solver.fetched.get(url)
            items.append(fetched or copyops.fetch_url(url, work / "fetch", checksum=op.checksum or None))
    if local:
        items.extend(ctxmod.expand_sources(src, local, ignore=ignore, where=where))
    reuse = _copy_reuse(solver, state, op)
    copyops.copy_files(upper, items, op.dest, src=src, target=target, workdir=op.cwd, owner=owner, chmod=chmod,
                       excludes=op.excludes, parents=op.parents, link=op.link, ignore=ignore,
                       unpack=op.kind == "ADD", where=where,
                       preserve_owner=op.from_stage is not None or bool(op.from_image), reuse=reuse)
    return reuse


def _secret_value(solver: "Solver", mount: RunMount) -> bytes | None:
    value = solver.opts.secrets.get(mount.id or os.path.basename(mount.target))
    if value is None and mount.required:
        raise BuildError(f"secret {mount.id!r} is required but was not given",
                         hint=f"pass --secret id={mount.id},src=FILE")
    return value


def _ssh_proxy(solver: "Solver", m: RunMount, held: list[Any]) -> Path | None:
    """A proxy socket to the `--ssh` agent of mount `m` (owner and mode as the mount says); None
    when `--ssh` did not give that id and the mount is optional."""
    from builder.build.sources.ssh import AgentProxy

    upstream = solver.opts.ssh.socket(m.id) if solver.opts.ssh is not None else None
    if upstream is None:
        if m.required:
            raise BuildError(f"ssh agent {m.id!r} is required but was not given",
                             hint=f"pass --ssh {m.id} (forwards $SSH_AUTH_SOCK) or --ssh {m.id}=SOCKET|KEY")
        return None
    proxy = AgentProxy(upstream, uid=m.uid or 0, gid=m.gid or 0, mode=m.mode if m.mode is not None else 0o600)
    held.append(proxy)
    return proxy.path


def _run_exec(op: Exec, node: Node, state: "_State", solver: "Solver", sid: int, work: Path,
              upper: Path) -> StepResult:
    env = list(op.env)
    mounts: list[Any] = []
    held: list[Any] = []  # flock fds of cache mounts and ssh agent proxies, released when the step ends
    try:
        return _run_exec_mounted(op, node, state, solver, sid, work, upper, env, mounts, held)
    finally:
        for h in held:
            os.close(h) if isinstance(h, int) else h.close()


def _cache_mount_dir(solver: "Solver", m: RunMount, work: Path, held: list[int]) -> Path:
    """The persistent directory of a cache mount; `sharing` as BuildKit defines it:
    shared: used by every step at once; locked: one step at a time (others wait);
    private: a fresh directory when another step holds it."""
    import fcntl
    import hashlib

    name = hashlib.sha256((m.id or m.target).encode()).hexdigest()[:32]
    d = solver.store.root / "cache" / "mounts" / name
    d.mkdir(parents=True, exist_ok=True)
    if m.sharing == "shared":
        return d
    fd = os.open(d.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if m.sharing == "private" else 0))
    except BlockingIOError:
        os.close(fd)
        private = work / f"cache-{name}"
        private.mkdir()
        return private
    held.append(fd)
    return d


def _run_exec_mounted(op: Exec, node: Node, state: "_State", solver: "Solver", sid: int, work: Path,
                      upper: Path, env: list[tuple[str, str]], mounts: list[Any], held: list[Any]) -> StepResult:
    from runtime.executor import LinuxExecutor
    from runtime.spec import ALL_CAPABILITIES, Mount, NetworkMode, ProcessSpec, RootfsSpec

    for i, m in enumerate(op.mounts):
        if m.type == "tmpfs":
            opts = (f"size={m.size}",) if m.size else ()
            mounts.append(Mount(m.target, "tmpfs", "tmpfs", False, opts))
        elif m.type == "cache":
            d = _cache_mount_dir(solver, m, work, held)
            if m.uid is not None or m.gid is not None or m.mode is not None:
                if not any(os.scandir(d)):
                    os.chown(d, m.uid or 0, m.gid or 0)
                    if m.mode is not None:
                        os.chmod(d, m.mode)
            mounts.append(Mount(m.target, str(d), "bind", m.readonly))
        elif m.type == "bind":
            if m.source_stage is None and not m.source_image:
                host = solver.context.view.host_path(solver.context.view.resolve((m.source or "").lstrip("/")))
            else:
                view = view_of(solver, m.source_stage, m.source_image)
                host = view.host_path(view.resolve((m.source or "").lstrip("/")))
            if host is None:
                raise BuildError(f"mount source {m.source!r} not found")
            if not m.readonly:  # rw bind mounts write to a throwaway copy, never to the source
                copy = work / f"bind{i}"
                shutil.copytree(host, copy, symlinks=True) if os.path.isdir(host) else shutil.copy2(host, copy)
                host = copy
            mounts.append(Mount(m.target, str(host), "bind", m.readonly))
        elif m.type == "secret":
            value = _secret_value(solver, m)
            if value is None:
                continue
            if m.env:
                env.append((m.env, value.decode(errors="replace")))
            if m.target and not (m.env and not m.target.startswith("/run/secrets/") and False):
                sdir = work / "secrets"
                sdir.mkdir(mode=0o700, exist_ok=True)
                f = sdir / f"s{i}"
                f.write_bytes(value)
                os.chmod(f, m.mode if m.mode is not None else 0o400)
                if m.uid is not None or m.gid is not None:
                    os.chown(f, m.uid or 0, m.gid or 0)
                mounts.append(Mount(m.target, str(f), "bind", True))
        elif m.type == "file":  # a RUN heredoc with a shebang, run as a file (BuildKit: /dev/pipes/NAME)
            f = work / f"file{i}"
            f.write_text(m.content)
            os.chmod(f, m.mode if m.mode is not None else 0o644)
            mounts.append(Mount(m.target, str(f), "bind", True))
        elif m.type == "ssh":
            proxy = _ssh_proxy(solver, m, held)
            if proxy is not None:
                mounts.append(Mount(m.target, str(proxy), "bind", False))
    ssh = [m for m in op.mounts if m.type == "ssh"]
    if ssh and not any(k == "SSH_AUTH_SOCK" for k, _ in env):  # as BuildKit: the first ssh mount
        env.append(("SSH_AUTH_SOCK", ssh[0].target))
    lower = tuple(lower_dirs(solver, state.layers, sid))
    workdir = work / "work"
    workdir.mkdir()
    rootfs = RootfsSpec(lower, upper, workdir)
    insecure = op.security == "insecure"  # BuildKit's insecure mode: every capability, /proc and /sys open
    # BuildKit's fixed hostname: a RUN that records it (in a file, a log) gives the same layer every time
    process = ProcessSpec(tuple(op.argv), tuple(env), op.user, op.cwd, hostname="buildkitsandbox",
                          capabilities=ALL_CAPABILITIES if insecure else None, privileged=insecure)
    network = {"none": NetworkMode.NONE, "host": NetworkMode.HOST}.get(solver._network(op), NetworkMode.DEFAULT)
    tail: list[bytes] = []
    total = [0]

    def on_output(data: bytes) -> None:
        total[0] += len(data)
        tail.append(data)
        if len(tail) > 200:
            del tail[:100]
        solver.progress.output(sid, data)

    pids: list[int] = []

    def on_start(pid: int) -> None:
        pids.append(pid)
        with _running_lock:
            _running.add(pid)

    try:
        status = LinuxExecutor().run(process, rootfs, tuple(mounts), network, stdout=on_output, stderr=on_output,
                                     on_start=on_start)
    finally:
        with _running_lock:
            _running.difference_update(pids)
    if status.code != 0:
        text = b"".join(tail).decode(errors="replace").splitlines()[-OUTPUT_TAIL_LINES:]
        shown = " ".join(op.argv)
        raise StepError(f"process \"{shown}\" did not complete successfully: exit code: {status.code}",
                        filename=node.origin.filename, line=node.origin.line, column=node.origin.column,
                        source_line=node.origin.text, output_tail="\n".join(text))
    return StepResult(None, status.cpu_seconds, status.memory_peak_bytes, total[0])
