"""`RUN --mount`: each mount of a step as a runtime mount, with what it holds while the step runs.

    mount_all(job, step, mounts, ws, env, held) -> [runtime Mount]

bind: the context, a stage or an image (rw: a throwaway copy); cache: a persistent directory under
the store, shared, locked or private as BuildKit's `sharing` says; tmpfs; secret: a file (and/or an
environment variable) from `--secret`; ssh: a proxy socket to the `--ssh` agent; file: a RUN
heredoc script. `held` receives the flock fds of cache mounts and the ssh proxies: the caller
releases them (`release`) when the step ends.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

from builder.build.ops.rootfs import view_of
from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.graph import RunMount
    from builder.build.job import BuildJob, Step
    from builder.build.ops.workspace import Workspace
    from builder.build.sources.ssh import AgentProxy
    from runtime.spec import Mount

    Held = Union[int, AgentProxy]


def mount_all(job: BuildJob, step: Step, mounts: Sequence[RunMount], ws: Workspace, env: list[tuple[str, str]],
              held: list[Held]) -> list[Mount]:
    """The runtime mounts of `mounts` (a missing optional secret or agent mounts nothing)."""
    from runtime.spec import Mount

    out: list[Mount] = []
    for i, m in enumerate(mounts):
        if m.type == "tmpfs":
            opts = (f"size={m.size}",) if m.size else ()
            out.append(Mount(m.target, "tmpfs", "tmpfs", False, opts))
        elif m.type == "cache":
            d = _cache_dir(job, m, ws, held)
            if m.uid is not None or m.gid is not None or m.mode is not None:
                if not any(os.scandir(d)):
                    os.chown(d, m.uid or 0, m.gid or 0)
                    if m.mode is not None:
                        os.chmod(d, m.mode)
            out.append(Mount(m.target, str(d), "bind", m.readonly))
        elif m.type == "bind":
            out.append(Mount(m.target, _bind_source(job, step, m, ws, i), "bind", m.readonly))
        elif m.type == "secret":
            value = _secret(job, m)
            if value is None:
                continue
            if m.env:
                env.append((m.env, value.decode(errors="replace")))
            if m.target:
                out.append(Mount(m.target, str(_secret_file(m, value, ws, i)), "bind", True))
        elif m.type == "file":  # a RUN heredoc with a shebang, run as a file (BuildKit: /dev/pipes/NAME)
            f = ws.dir(f"file{i}")
            f.write_text(m.content)
            os.chmod(f, m.mode if m.mode is not None else 0o644)
            out.append(Mount(m.target, str(f), "bind", True))
        elif m.type == "ssh":
            proxy = _ssh_proxy(job, m, held)
            if proxy is not None:
                out.append(Mount(m.target, str(proxy), "bind", False))
    return out


def release(held: list[Held]) -> None:
    """Unlock the cache mounts and close the agent proxies of a step."""
    for h in held:
        os.close(h) if isinstance(h, int) else h.close()


def _bind_source(job: BuildJob, step: Step, m: RunMount, ws: Workspace, i: int) -> str:
    if m.source_stage is None and not m.source_image:
        view = job.context.view
    else:
        view = view_of(job, step, m.source_stage, m.source_image)
    host = view.host_path(view.resolve((m.source or "").lstrip("/")))
    if host is None:
        raise BuildError(f"mount source {m.source!r} not found")
    if not m.readonly:  # rw bind mounts write to a throwaway copy, never to the source
        copy = ws.dir(f"bind{i}")
        shutil.copytree(host, copy, symlinks=True) if os.path.isdir(host) else shutil.copy2(host, copy)
        return str(copy)
    return str(host)


def _cache_dir(job: BuildJob, m: RunMount, ws: Workspace, held: list[Held]) -> Path:
    """The persistent directory of a cache mount; `sharing` as BuildKit defines it:
    shared: used by every step at once; locked: one step at a time (others wait);
    private: a fresh directory when another step holds it."""
    import fcntl
    import hashlib

    name = hashlib.sha256((m.id or m.target).encode()).hexdigest()[:32]
    d = job.cache.mount_dir(name)
    if m.sharing == "shared":
        return d
    fd = os.open(d.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if m.sharing == "private" else 0))
    except BlockingIOError:
        os.close(fd)
        private = ws.dir(f"cache-{name}")
        private.mkdir()
        return private
    held.append(fd)
    return d


def _secret(job: BuildJob, m: RunMount) -> bytes | None:
    value = job.options.secrets.get(m.id or os.path.basename(m.target))
    if value is None and m.required:
        raise BuildError(f"secret {m.id!r} is required but was not given",
                         hint=f"pass --secret id={m.id},src=FILE")
    return value


def _secret_file(m: RunMount, value: bytes, ws: Workspace, i: int) -> Path:
    sdir = ws.dir("secrets")
    sdir.mkdir(mode=0o700, exist_ok=True)
    f = sdir / f"s{i}"
    f.write_bytes(value)
    os.chmod(f, m.mode if m.mode is not None else 0o400)
    if m.uid is not None or m.gid is not None:
        os.chown(f, m.uid or 0, m.gid or 0)
    return f


def _ssh_proxy(job: BuildJob, m: RunMount, held: list[Held]) -> Path | None:
    """A proxy socket to the `--ssh` agent of mount `m` (owner and mode as the mount says); None
    when `--ssh` did not give that id and the mount is optional."""
    from builder.build.sources.ssh import AgentProxy

    upstream = job.options.ssh.socket(m.id) if job.options.ssh is not None else None
    if upstream is None:
        if m.required:
            raise BuildError(f"ssh agent {m.id!r} is required but was not given",
                             hint=f"pass --ssh {m.id} (forwards $SSH_AUTH_SOCK) or --ssh {m.id}=SOCKET|KEY")
        return None
    proxy = AgentProxy(upstream, uid=m.uid or 0, gid=m.gid or 0, mode=m.mode if m.mode is not None else 0o600)
    held.append(proxy)
    return proxy.path
