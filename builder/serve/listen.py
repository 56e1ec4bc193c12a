"""The listeners: unix sockets created 0660, owned by root and the `--group` (Docker's `docker`
group convention); TCP with TLS client verification, or plain on loopback with `--insecure-tcp`.
`cleanup` clears what a killed server left (stale sockets are replaced when nothing answers on
them; upload directories of dead servers; containers whose supervisor died)."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import ssl
from pathlib import Path

from aiohttp import web

from builder.serve.options import ServeError, ServeOptions
from builder.util.pids import alive

UPLOADS = "serve-uploads"


def sites(runner: web.AppRunner, options: ServeOptions, bound: list[str]) -> list[web.BaseSite]:
    """A site per listener; each unix socket made is added to `bound` as soon as it exists."""
    out: list[web.BaseSite] = []
    context = _tls(options) if options.tlsverify else None
    for lst in options.listeners:
        if lst.kind == "unix":
            sock = unix_socket(lst.path, options.group)
            bound.append(lst.path)
            out.append(web.SockSite(runner, sock))
        else:
            out.append(web.TCPSite(runner, lst.host, lst.port, ssl_context=context, reuse_address=True))
    return out


def unix_socket(path: str, group: str | None) -> socket.socket:
    """A listening unix socket at `path`, mode 0660, owner root (us) and `group` (default: ours)."""
    gid = os.getgid()
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
        except KeyError:
            raise ServeError(f"--group {group}: no such group", hint="create it (groupadd) or name another") from None
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # a dead server's socket
        else:
            raise ServeError(f"{path}: another server is listening there")
        finally:
            probe.close()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # never world-accessible, not even between bind and chmod
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chown(path, os.getuid(), gid)
    os.chmod(path, 0o660)
    sock.listen(128)
    return sock


def _tls(options: ServeOptions) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(options.tlscert), str(options.tlskey))
        ctx.load_verify_locations(cafile=str(options.tlscacert))
    except (OSError, ssl.SSLError) as exc:
        raise ServeError(f"cannot load the TLS files: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def upload_dir(root: Path) -> Path:
    """A fresh directory for one request body, named after this server's pid (see `cleanup`)."""
    import tempfile

    from builder.util.spread import spread_subdirs

    base = root / "tmp" / UPLOADS
    base.mkdir(parents=True, exist_ok=True)
    spread_subdirs(base)  # each context is unpacked in a quiet block group (see util/spread.py)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))


def cleanup(root: Path) -> None:
    """Remove what killed servers left: their uploads and the step directories of their builds
    (`tmp/step-<pid>-*`, see builder/build/ops/workspace.py); mark containers whose supervisor died."""
    base = root / "tmp" / UPLOADS
    if base.is_dir():
        for entry in base.iterdir():
            pid = entry.name.partition("-")[0]
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
    for entry in (root / "tmp").glob("step-*-*"):
        pid = entry.name.split("-")[1]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    from builder.containers import containers

    containers(root).sweep()

