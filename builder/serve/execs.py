"""`docker exec`: create (`POST /containers/{id}/exec`), start (`POST /exec/{id}/start`, hijacked
like attach, or detached), inspect (`GET /exec/{id}/json`, the exit code the CLI exits with) and
resize. The process runs in the running container's namespaces (`runtime.nsexec`, through
`Container.exec`) from a thread of the server's pool; its output comes to the event loop through a
bounded queue (a slow client slows the process, as a full pipe would)."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from aiohttp import web

from builder.serve.api import ApiError, blocking, json_body, json_response, qint
from builder.serve.containers import Hijacked, Stdin, get, send
from builder.serve.detach import DEFAULT, EscapeFilter, parse_detach_keys
from builder.serve.streams import frame, hijack


def routes(r: Any) -> None:
    r.add("POST", "/containers/{id}/exec", create)
    r.add("POST", "/exec/{id}/start", start)
    r.add("GET", "/exec/{id}/json", inspect)
    r.add("POST", "/exec/{id}/resize", resize)


class Exec:
    """One exec instance, kept in memory (`app["execs"]`) as dockerd keeps them."""

    def __init__(self, container: Any, process: Any, body: dict[str, Any]) -> None:
        self.id = os.urandom(32).hex()
        self.container, self.process = container, process
        self.attach_stdin = bool(body.get("AttachStdin"))
        self.attach_stdout = bool(body.get("AttachStdout"))
        self.attach_stderr = bool(body.get("AttachStderr"))
        self.privileged = bool(body.get("Privileged"))
        self.started = self.running = False
        self.exit_code: int | None = None
        self.pid = 0
        self.master: int | None = None
        self.size: tuple[int, int] | None = None
        self.detach_keys = b""  # what DetachKeys asked for (the default when empty)

    def describe(self) -> dict[str, Any]:
        p = self.process
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "ContainerID": self.container.id,
                "OpenStdin": self.attach_stdin, "OpenStdout": self.attach_stdout, "OpenStderr": self.attach_stderr,
                "CanRemove": False, "DetachKeys": base64.b64encode(self.detach_keys).decode(),  # []byte, as dockerd's
                "Pid": self.pid if self.running else 0,
                "ProcessConfig": {"tty": p.tty, "entrypoint": p.argv[0], "arguments": list(p.argv[1:]),
                                  "privileged": self.privileged, "user": p.user}}

    def terminal(self, master: int) -> None:
        """The exec's terminal exists (called from the worker thread): size it as the client asked."""
        self.master = master
        if self.size is not None:
            self.resize(*self.size)

    def resize(self, height: int, width: int) -> None:
        import fcntl
        import struct
        import termios

        self.size = (height, width)
        if self.master is not None and self.running:
            try:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            except OSError:
                pass


def _get(request: web.Request) -> Exec:
    ex = request.app["execs"].get(request.match_info["id"])
    if ex is None:
        raise ApiError(404, f"No such exec instance: {request.match_info['id']}")
    return ex


async def create(request: web.Request) -> web.Response:
    from builder.containers import RunOptionError, exec_spec

    container = get(request)
    body = await json_body(request)
    if not container.is_running():
        raise ApiError(409, f"Container {container.id} is not running")
    cmd, env = body.get("Cmd"), body.get("Env") or []
    for value, what in ((cmd, "Cmd"), (env, "Env")):
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ApiError(400, f"invalid {what}: expected a list of strings")
    try:
        process = exec_spec(container, tuple(cmd or ()), tuple(env), body.get("User") or "",
                            body.get("WorkingDir") or "", bool(body.get("Tty")), bool(body.get("AttachStdin")),
                            bool(body.get("Privileged")))
    except RunOptionError as exc:
        raise ApiError(400, exc.message) from None
    ex = Exec(container, process, body)
    keys = next((v for k, v in body.items() if k.lower() == "detachkeys"), "")  # docker-py sends detachKeys
    if keys:  # (Go's JSON decoding, dockerd's, matches field names in any case)
        try:
            ex.detach_keys = parse_detach_keys(str(keys))
        except ApiError:
            raise ApiError(400, f"Invalid escape keys ({keys}) provided") from None
    execs = request.app["execs"]
    execs[ex.id] = ex
    for old in [k for k, e in execs.items() if not e.running and e.exit_code is not None][:-256]:
        del execs[old]  # dockerd forgets finished ones too
    request.app["events"].publish("container", f"exec_create: {' '.join(process.argv)}", container.id,
                                  name=container.config.name, image=container.config.image_ref, execID=ex.id)
    return json_response({"Id": ex.id}, 201)


async def inspect(request: web.Request) -> web.Response:
    return json_response(_get(request).describe())


async def resize(request: web.Request) -> web.Response:
    ex = _get(request)
    if not ex.process.tty:
        return web.Response(status=201)
    ex.resize(qint(request, "h"), qint(request, "w"))
    return web.Response(status=201)


async def start(request: web.Request) -> web.StreamResponse:
    """Detached: started, 200 at once. Otherwise the connection is hijacked (101 with `Upgrade:
    tcp`) and carries the process's stdin one way and its output the other (multiplexed frames, or
    raw with a terminal) until it exits; its exit code is recorded before the connection closes."""
    ex = _get(request)
    body = await json_body(request)
    if ex.started:
        raise ApiError(409, f"Exec {ex.id} has already been started")
    if not ex.container.is_running():
        raise ApiError(409, f"Container {ex.container.id} is not running")
    ex.started = True
    loop = asyncio.get_running_loop()
    if body.get("Detach"):
        ex.running = True
        task = loop.create_task(_run(request, ex, None, None))
        request.app["tasks"].add(task)
        task.add_done_callback(request.app["tasks"].discard)
        return web.Response(status=200)
    resp, upgrade = await hijack(request, raw=ex.process.tty)
    transport = request.transport
    assert transport is not None
    stdin: Stdin | None = None
    stdin_r: int | None = None
    if ex.attach_stdin and upgrade:
        stdin_r, stdin_w = os.pipe()
        stdin = Stdin(stdin_w)
    if upgrade:  # on a terminal, the detach keys end this connection and leave the process running
        escape = EscapeFilter(ex.detach_keys or DEFAULT) if stdin is not None and ex.process.tty else None
        transport.set_protocol(Hijacked(request.protocol, stdin, escape, transport))
    ex.running = True
    await _run(request, ex, stdin_r, (transport, resp, upgrade))
    if stdin is not None:
        stdin.close()
    if upgrade:
        transport.close()
    return resp


async def _run(request: web.Request, ex: Exec, stdin_r: int | None, client: tuple[Any, Any, bool] | None) -> None:
    """Run the exec in the pool; with a client, send its output as it comes."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=64)
    wanted = {1: ex.attach_stdout, 2: ex.attach_stderr}

    def sink(stream: int) -> Any:
        def put(data: bytes) -> None:
            if client is not None and wanted[stream]:
                asyncio.run_coroutine_threadsafe(queue.put((stream, data)), loop).result()
        return put

    def started(pid: int) -> None:
        ex.pid = pid

    def work() -> int:
        try:
            status = ex.container.exec(ex.process, stdout=sink(1), stderr=None if ex.process.tty else sink(2),
                                       stdin=stdin_r, on_start=started, on_terminal=ex.terminal)
            return status.code
        finally:
            ex.master = None
            if stdin_r is not None:
                os.close(stdin_r)

    bus = request.app["events"]
    attrs = {"name": ex.container.config.name, "image": ex.container.config.image_ref, "execID": ex.id}
    bus.publish("container", f"exec_start: {' '.join(ex.process.argv)}", ex.container.id, **attrs)
    job = loop.run_in_executor(request.app["pool"], work)
    job.add_done_callback(lambda _: loop.create_task(queue.put(None)))
    message = b""
    while client is not None:
        item = await queue.get()
        if item is None:
            break
        transport, resp, raw = client
        if transport.is_closing():
            continue  # keep draining: the process must not block on a gone client
        data = item[1] if ex.process.tty else frame(item[0], item[1])
        try:
            await send(transport, resp, data, raw)
        except ConnectionResetError:
            continue
    try:
        ex.exit_code = await job
    except Exception as exc:  # noqa: BLE001 - the process could not start: 126, its message to the client
        from builder.serve.api import status_of

        ex.exit_code = 126
        message = f"OCI runtime exec failed: exec failed: unable to start container process: {status_of(exc)[1]}: " \
                  "unknown\r\n".encode()  # dockerd's words, which scripts look for
    ex.running = False
    if client is not None and message and not client[0].is_closing():
        await send(client[0], client[1], message if ex.process.tty else frame(1, message), client[2])
    bus.publish("container", "exec_die", ex.container.id, exitCode=str(ex.exit_code), **attrs)
