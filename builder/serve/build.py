"""`POST /build`: the context tar (plain or compressed) streamed to disk under a size limit,
checked and unpacked, then `builder.build.build()` in a thread, its progress streamed back as the
legacy builder's JSON lines: `{"stream": ...}`, `{"aux": {"ID": ...}}`, `{"errorDetail": ...}`.
A client that disconnects cancels the build: no step starts, running processes are killed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import posixpath
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from builder.serve.api import ApiError, qbool, qint, qjson, stopping
from builder.serve.context import TarScanner, prime_statcache
from builder.serve.streams import StreamProgress, line

log = logging.getLogger("pybuild.serve")
NETWORKS = {"": "default", "default": "default", "bridge": "default", "host": "host", "none": "none"}


def routes(r: Any) -> None:
    r.add("POST", "/build", build)


async def receive_body(request: web.Request, dest: Path, limit: int) -> str:
    """Stream the request body into `dest`; 413 past `limit` bytes. Returns its sha256 (hex)."""
    import hashlib

    size = 0
    digest = hashlib.sha256()
    with open(dest, "wb") as f:
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body larger than the server's limit ({limit} bytes)")
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def pad_tar(path: Path) -> None:
    """The docker CLI's `build -f- .` sends a tar cut right after the last member's data, without its
    padding and end blocks (dockerd's Go reader accepts that, GNU tar does not): complete an
    uncompressed one (a `TarScanner` has checked that it ends at a member's end)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")):  # compressed: left alone
        return
    with open(path, "ab") as f:
        f.write(b"\0" * (-size % 512 + 1024))


def unpack(tar_path: Path, dest: Path) -> None:
    """Unpack a context tar checked by a `TarScanner` into `dest` with GNU tar (about 3x faster than
    the layer extractor, `builder.build.files.extract`, on many small files; a checked context needs
    none of its layer semantics), or with that extractor where there is no `tar`."""
    import subprocess

    from builder.build.files.extract import extract_archive
    from builder.errors import BuildError

    dest.mkdir(parents=True)
    if shutil.which("tar"):
        proc = subprocess.run(["tar", "-x", "-f", str(tar_path), "-C", str(dest), "--no-same-owner"],
                              capture_output=True, text=True)
        if proc.returncode:
            raise ApiError(400, f"invalid build context: {' '.join(proc.stderr.strip().splitlines()[-1:])}")
        return
    try:
        with open(tar_path, "rb") as f:
            extract_archive(f, dest, name="the build context", keep_owner=False)
    except BuildError as exc:
        raise ApiError(400, f"invalid build context: {exc.message}") from None


def registry_config(request: web.Request) -> None:
    """X-Registry-Config: base64 JSON {registry: {username, password}}, used for this server's pulls."""
    raw = request.headers.get("X-Registry-Config", "")
    if not raw:
        return
    try:
        conf = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        raise ApiError(400, "invalid X-Registry-Config header: expected base64 JSON") from None
    if not isinstance(conf, dict):
        raise ApiError(400, "invalid X-Registry-Config header: expected a JSON object")
    from builder.registry.credentials import Credentials, use_in_process

    for host, entry in conf.items():
        if isinstance(entry, dict) and entry.get("username") and entry.get("password"):
            use_in_process(host, Credentials(str(entry["username"]), str(entry["password"])))
        elif isinstance(entry, dict) and entry.get("identitytoken"):
            use_in_process(host, Credentials("<token>", str(entry["identitytoken"])))


def options(request: web.Request, context: Path) -> Any:
    """The `BuildOptions` of the query; 400 on a parameter pybuild cannot honour."""
    from builder.build import BuildOptions
    from builder.build.options import parse_add_hosts
    from builder.cache.export import parse_cache_spec
    from builder.errors import BuildError

    q = request.query
    if q.get("remote"):
        raise ApiError(400, "remote build contexts are not supported: send the context as the request body")
    network = q.get("networkmode", "")
    if network not in NETWORKS:
        raise ApiError(400, f"invalid networkmode {network!r}: pybuild builds support default, host and none")
    dockerfile = q.get("dockerfile") or "Dockerfile"
    clean = posixpath.normpath(dockerfile.lstrip("/"))
    if clean == ".." or clean.startswith("../"):
        raise ApiError(400, f"invalid dockerfile {dockerfile!r}: it must be inside the context")
    build_args = {k: str(v) for k, v in (qjson(request, "buildargs", {}) or {}).items() if v is not None}
    labels = {k: str(v) for k, v in (qjson(request, "labels", {}) or {}).items()}
    cache_from = qjson(request, "cachefrom", []) or []
    if not isinstance(cache_from, list):
        raise ApiError(400, "invalid cachefrom: expected a JSON list of image names")
    specs = []
    for c in cache_from:
        try:
            specs.append(parse_cache_spec(str(c), export=False))
        except BuildError as exc:
            raise ApiError(400, f"invalid cachefrom (--cache-from) {c!r}: {exc.message}") from None
    shm_size = qint(request, "shmsize")
    if shm_size < 0:
        raise ApiError(400, f"invalid shmsize {shm_size}: it must be positive")
    try:
        extra_hosts = parse_add_hosts(q.getall("extrahosts", []))  # repeated NAME:IP, as dockerd reads them
        return BuildOptions(
            str(context), dockerfile=str(context.joinpath(*clean.split("/"))), tags=tuple(q.getall("t", [])),
            build_args=build_args, target=q.get("target") or None, platform=q.get("platform") or None,
            labels=labels, no_cache=qbool(request, "nocache"), pull=qbool(request, "pull"),
            network=NETWORKS[network], cache_from=tuple(specs), extra_hosts=extra_hosts, shm_size=shm_size,
            frozen_context=True)  # its own unpacked copy, only ever read (see context_dir)
    except BuildError as exc:
        raise ApiError(400, exc.message) from None


CONTEXTS = "serve-contexts"
KEEP_CONTEXTS = 16


async def build(request: web.Request) -> web.StreamResponse:
    from builder.serve.listen import upload_dir

    app = request.app
    loop = asyncio.get_running_loop()
    for tag in request.query.getall("t", []):
        _check_tag(tag)
    registry_config(request)
    work = await loop.run_in_executor(app["pool"], upload_dir, app["root"])
    in_use: dict[str, int] = app.setdefault("contexts", {})
    key = ""
    try:
        t0 = time.monotonic()
        received = await receive_context(request, work)
        key = received.key
        in_use[key] = in_use.get(key, 0) + 1
        t1 = time.monotonic()
        context = await loop.run_in_executor(app["pool"], context_dir, app["root"], received)
        app.setdefault("context_heads", {})[received.head] = key
        t2 = time.monotonic()
        opts = options(request, context)
        try:
            return await _run(request, opts)
        finally:
            log.info("build %s: context %.1f MB received in %.3fs (%s), ready in %.3fs; build %.3fs",
                     ",".join(opts.tags) or "(untagged)", received.size / 1e6, t1 - t0,
                     "unpacked as it came" if received.unpacked else "to disk", t2 - t1, time.monotonic() - t2)
    finally:
        if key:
            in_use[key] -= 1
            if not in_use[key]:
                del in_use[key]
        await loop.run_in_executor(app["pool"], shutil.rmtree, work, True)
        await loop.run_in_executor(app["pool"], forget_contexts, app["root"], set(in_use))


class Received:
    """A context as received: its sha256 (`key`), the sha256 of its first 64 KiB (`head`), its
    scanner, and where it went: unpacked into `work/context` as it came, or to `work/context.tar`."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.key = self.head = ""
        self.size = 0
        self.scanner = TarScanner()
        self.unpacked = False


HEAD = 64 << 10


async def receive_context(request: web.Request, work: Path) -> Received:
    """Read the body. A plain tar whose first 64 KiB were not seen before (a new context) is
    unpacked by GNU tar as it arrives, each chunk passed on once a `TarScanner` accepted it: no copy
    of the tar on disk, the unpacking overlaps the upload. One that starts as a known context did
    (most likely a rebuild, which reuses that context's directory as it is) and a compressed one go
    to disk; `context_dir` scans and unpacks those only when their directory is not there."""
    import hashlib

    got = Received(work)
    limit = request.app["options"].max_body
    digest = hashlib.sha256()
    pending: list[bytes] = []
    tar: asyncio.subprocess.Process | None = None
    out: Any = None
    try:
        async for chunk in request.content.iter_chunked(1 << 20):
            got.size += len(chunk)
            if got.size > limit:
                raise ApiError(413, f"request body larger than the server's limit ({limit} bytes)")
            digest.update(chunk)
            if out is None:  # to disk: checked later, only if its directory is not there already
                got.scanner.feed(chunk)
            if tar is None and out is None:
                pending.append(chunk)
                if got.size < HEAD:
                    continue
                tar, out = await _sink(request, got, b"".join(pending))
                pending = []
                continue
            if tar is not None:
                await _feed(tar, chunk)
            else:
                out.write(chunk)
        if tar is None and out is None:
            got.scanner.finish()  # a small body: scanned whole before anything is written
            tar, out = await _sink(request, got, b"".join(pending))
        elif tar is not None:
            got.scanner.finish()
        got.key = digest.hexdigest()
        if tar is not None:
            assert tar.stdin is not None
            await _feed(tar, b"\0" * (-got.size % 512 + 1024))  # the end blocks `build -f-` leaves out
            tar.stdin.close()
            _, err = await tar.communicate()
            if tar.returncode:
                raise ApiError(400, f"invalid build context: {' '.join(err.decode(errors='replace').strip().splitlines()[-1:])}")
            tar = None
        return got
    finally:
        if out is not None:
            out.close()
        if tar is not None and tar.returncode is None:
            tar.kill()
            await tar.wait()


async def _feed(tar: asyncio.subprocess.Process, data: bytes) -> None:
    """Pass accepted bytes on to GNU tar; if it already gave up, its own message is the answer."""
    assert tar.stdin is not None
    try:
        tar.stdin.write(data)
        await tar.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        err = await tar.stderr.read() if tar.stderr is not None else b""
        await tar.wait()
        last = " ".join(err.decode(errors="replace").strip().splitlines()[-1:]) or "tar stopped reading"
        raise ApiError(400, f"invalid build context: {last}") from None


async def _sink(request: web.Request, got: Received, head: bytes) -> tuple[Any, Any]:
    """Where the body goes, decided on its first 64 KiB (see `receive_context`); `head` is written."""
    import hashlib

    got.head = hashlib.sha256(head[:HEAD]).hexdigest()
    known = got.head in request.app.setdefault("context_heads", {})
    if not known and not got.scanner.decompress and shutil.which("tar"):
        fresh = got.work / "context"
        fresh.mkdir()
        tar = await asyncio.create_subprocess_exec(
            "tar", "-x", "-f", "-", "-C", str(fresh), "--no-same-owner", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert tar.stdin is not None
        got.unpacked = True
        await _feed(tar, head)
        return tar, None
    out = open(got.work / "context.tar", "wb")
    out.write(head)
    return None, out


def context_dir(root: Path, got: Received) -> Path:
    """The unpacked context of a tar whose sha256 is `key`: the same tar sent again (a rebuild)
    gets the same directory, so the no-op memo and the stat cache recognise it. Contexts are only
    read by builds (a read-write bind mount gets a copy), so the digests the scanner took of its
    files go straight into the stat cache."""
    import os

    dest = root / "tmp" / CONTEXTS / got.key
    if dest.is_dir():
        os.utime(dest)  # most recently used
        return dest
    fresh = got.work / "context"
    if not got.unpacked:
        body = got.work / "context.tar"
        got.scanner = TarScanner()
        with open(body, "rb") as f:
            while chunk := f.read(1 << 20):
                got.scanner.feed(chunk)
        got.scanner.finish()
        pad_tar(body)
        unpack(body, fresh)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(fresh, dest)
    except OSError:  # the same context, unpacked at the same time by another request
        if not dest.is_dir():
            raise
        return dest
    prime_statcache(dest, got.scanner.digests, got.scanner.sizes)
    return dest


def forget_contexts(root: Path, in_use: set[str]) -> None:
    """Keep the most recently used contexts (and those in use), remove the others."""
    base = root / "tmp" / CONTEXTS
    if not base.is_dir():
        return
    entries = sorted(base.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP_CONTEXTS:]:
        if old.name not in in_use:
            shutil.rmtree(old, ignore_errors=True)


def _check_tag(tag: str) -> None:
    from builder.errors import InvalidReferenceError
    from builder.oci.reference import normalize_tag

    try:
        normalize_tag(tag)
    except InvalidReferenceError as exc:
        raise ApiError(400, f"invalid tag {tag!r}: {exc.message}") from None


async def _run(request: web.Request, opts: Any) -> web.StreamResponse:
    from builder.build import build as run_build

    loop = asyncio.get_running_loop()
    quiet = qbool(request, "q")
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    progress = StreamProgress(loop, queue, quiet, opts.dockerfile or "")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    cancel = threading.Event()  # set when the client leaves: the build stops at once, even in a silent RUN
    future = loop.run_in_executor(request.app["pool"], run_build, opts, progress, cancel)
    future.add_done_callback(lambda _: queue.put_nowait(None))
    while True:
        try:
            message = await asyncio.wait_for(queue.get(), 0.5)
        except asyncio.TimeoutError:
            message = {}
        if message is None:
            break
        if _gone(request) or stopping(request):
            progress.gone = True
            cancel.set()
            continue
        if message:
            try:
                await resp.write(line(message))
            except (ConnectionResetError, RuntimeError):
                progress.gone = True
                cancel.set()
    try:
        result = await future
    except Exception as exc:  # noqa: BLE001 - a failed build ends the stream with errorDetail
        if not progress.gone:
            await _write(resp, _error(exc, opts.context))
        _publish(request, "build-failed", "", opts)
        return resp
    lines = progress.finish() + [{"aux": {"ID": result.image_id}}]
    if quiet:
        lines.append({"stream": result.image_id + "\n"})
    else:
        lines.append({"stream": f"Successfully built {result.image_id[7:19]}\n"})
        lines += [{"stream": f"Successfully tagged {_familiar(t)}\n"} for t in opts.tags]
    for message in lines:
        await _write(resp, message)
    _publish(request, "build", result.image_id, opts)
    return resp


def _familiar(tag: str) -> str:
    return tag if ":" in tag.rpartition("/")[2] else tag + ":latest"


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _write(resp: web.StreamResponse, message: dict[str, Any]) -> None:
    try:
        await resp.write(line(message))
    except (ConnectionResetError, RuntimeError):
        pass


_EXIT = re.compile(r"did not complete successfully: exit code: (\d+)")


def _error(exc: BaseException, context: str) -> dict[str, Any]:
    """`errorDetail` as dockerd sends it, paths shown relative to the context; a RUN's exit code
    becomes `code` (the docker CLI exits with it, as with dockerd's legacy builder)."""
    from builder.serve.api import status_of

    message = status_of(exc)[1].replace(context.rstrip("/") + "/", "")
    found = _EXIT.search(message)
    code = int(found.group(1)) if found else 1
    return {"errorDetail": {"code": code or 1, "message": message}, "error": message}


def _publish(request: web.Request, action: str, image_id: str, opts: Any) -> None:
    bus = request.app["events"]
    if action == "build":
        for tag in opts.tags:
            bus.publish("image", "tag", image_id, name=_familiar(tag))
    bus.publish("image", action, image_id or "<none>")
