"""Container endpoints: create, start, wait, logs, attach (hijacked), stop, kill, restart, delete,
list, inspect, prune. Containers are `builder.containers`' (the same ones `pybuild ps` lists): each
started one runs under its own supervisor process, its output in the json-file log `log.json`
(stdout and stderr apart, each entry timed), which logs and attach read."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from builder.serve.api import ApiError, blocking, filters, json_body, json_response, qbool, qint, stopping
from builder.serve.detach import EscapeFilter, parse_detach_keys
from builder.serve.streams import frame, hijack


def routes(r: Any) -> None:
    r.add("POST", "/containers/create", create)
    r.add("GET", "/containers/json", list_containers)
    r.add("POST", "/containers/prune", prune)
    r.add("GET", "/containers/{id}/json", inspect)
    r.add("POST", "/containers/{id}/start", start)
    r.add("POST", "/containers/{id}/wait", wait)
    r.add("GET", "/containers/{id}/logs", logs)
    r.add("POST", "/containers/{id}/attach", attach)
    r.add("POST", "/containers/{id}/stop", stop)
    r.add("POST", "/containers/{id}/kill", kill)
    r.add("POST", "/containers/{id}/restart", restart)
    r.add("POST", "/containers/{id}/resize", resize)
    r.add("DELETE", "/containers/{id}", delete)
    r.add("GET", "/networks", networks)


async def networks(request: web.Request) -> web.Response:
    """The three networks pybuild's containers may use; none is user-defined (`type=custom`)."""
    from runtime.network import GATEWAY, SUBNET

    wanted = filters(request)
    if "custom" in wanted.get("type", []):
        return json_response([])
    ipam = {"Driver": "default", "Config": [{"Subnet": str(SUBNET), "Gateway": GATEWAY}]}
    return json_response([{"Name": name, "Id": name, "Driver": name if name != "none" else "null", "Scope": "local",
                           "Internal": False, "IPAM": ipam if name == "bridge" else {"Driver": "default", "Config": []},
                           "Containers": {}, "Options": {}, "Labels": {}}
                          for name in ("bridge", "host", "none")])


def _all(root: Path) -> Any:
    from builder.containers import containers

    return containers(root)


def get(request: web.Request) -> Any:
    """The container of the path's `{id}` (full id, unique prefix or name); 404 otherwise."""
    from runtime.containers import NoSuchContainer

    ref = request.match_info["id"].lstrip("/")
    try:
        return _all(request.app["root"]).get(ref)
    except NoSuchContainer:
        raise ApiError(404, f"No such container: {ref}") from None


# -- create ---------------------------------------------------------------------------------------

def run_options(body: dict[str, Any], name: str) -> Any:
    """Docker's create body as `pybuild run`'s options; 400 on what pybuild cannot run."""
    from builder.containers import RunOptions

    host = body.get("HostConfig") or {}
    entrypoint = body.get("Entrypoint")
    command = tuple(_strings(body.get("Cmd"), "Cmd"))
    entry: str | None = None
    if entrypoint is not None:
        parts = _strings(entrypoint, "Entrypoint")
        entry = parts[0] if parts else ""
        command = tuple(parts[1:]) + command
    network = host.get("NetworkMode") or "default"
    network = {"default": "bridge", "bridge": "bridge", "host": "host", "none": "none"}.get(network)
    if network is None:
        raise ApiError(400, f"network {host.get('NetworkMode')!r} not found: pybuild runs bridge, host or none")
    publish = []
    for port, bindings in (host.get("PortBindings") or {}).items():
        ctr, _, proto = port.partition("/")
        for b in bindings or [{}]:
            ip = (b or {}).get("HostIp") or "0.0.0.0"
            publish.append(f"{ip}:{(b or {}).get('HostPort') or ''}:{ctr}/{proto or 'tcp'}")
    nano = int(host.get("NanoCpus") or 0)
    return RunOptions(
        command=command, entrypoint=entry, env=tuple(_strings(body.get("Env"), "Env")),
        user=body.get("User") or None, workdir=body.get("WorkingDir") or None, tty=bool(body.get("Tty")),
        interactive=bool(body.get("OpenStdin")), hostname=body.get("Hostname") or "",
        volumes=tuple(_strings(host.get("Binds"), "Binds")) + tuple((body.get("Volumes") or {}).keys()),
        publish=tuple(publish), network=network, memory=str(host["Memory"]) if host.get("Memory") else None,
        cpus=nano / 1e9 if nano else None, pids_limit=host.get("PidsLimit") or None, name=name,
        auto_remove=bool(host.get("AutoRemove")), read_only=bool(host.get("ReadonlyRootfs")),
        security_opt=tuple(_strings(host.get("SecurityOpt"), "SecurityOpt")),
        add_hosts=tuple(_strings(host.get("ExtraHosts"), "ExtraHosts")), shm_size=_shm_size(host.get("ShmSize")))


def _shm_size(value: Any) -> str | None:
    """HostConfig.ShmSize: bytes, 0 or absent for the default 64 MiB."""
    if value is None or value == 0:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ApiError(400, "SHM size can not be less than 0" if isinstance(value, int) else "invalid ShmSize")
    return str(value)


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"invalid {what}: expected a list of strings")
    return value


async def create(request: web.Request) -> web.Response:
    from builder.containers import create as create_container
    from builder.errors import BuildError
    from runtime.errors import SandboxError

    body = await json_body(request)
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise ApiError(400, "config error: no image given (Image)")
    name = request.query.get("name", "").lstrip("/")
    opts = run_options(body, name)
    # --rm is the server's job (as dockerd's): it records the exit code for `wait` before removing
    auto_remove = opts.auto_remove
    opts = opts._replace(auto_remove=False)

    def work() -> Any:
        from builder.serve.images import _store, find

        find(_store(request.app["root"]), image)  # 404 "No such image" first: the docker CLI pulls then
        try:
            return create_container(request.app["root"], image, opts)
        except SandboxError as exc:
            if "already in use" in exc.message:
                raise ApiError(409, f"Conflict. {exc.message}") from None
            raise ApiError(400, exc.message) from None
        except BuildError as exc:
            raise ApiError(400, exc.message) from None

    container = await blocking(request, work)
    if auto_remove:
        request.app["autoremove"].add(container.id)
    request.app["events"].publish("container", "create", container.id, image=image, name=container.config.name)
    return json_response({"Id": container.id, "Warnings": []}, 201)


# -- lifecycle ------------------------------------------------------------------------------------

async def start(request: web.Request) -> web.Response:
    from runtime.errors import SandboxError

    container = get(request)
    if container.is_running():
        return web.Response(status=304)

    def work() -> Any:
        st = container.start_detached()
        if st.status == "exited" and st.error:
            raise ApiError(500, f"failed to start container {container.short_id}: {st.error}")
        return st

    try:
        await blocking(request, work)
    except SandboxError as exc:
        raise ApiError(500, exc.message) from None
    _started(request.app, container)
    return web.Response(status=204)


def _started(app: web.Application, container: Any) -> None:
    """Publish `start`, and `die` (then `destroy` for --rm) when it ends."""
    bus = app["events"]
    attrs = {"image": container.config.image_ref, "name": container.config.name}
    bus.publish("container", "start", container.id, **attrs)

    async def watch() -> None:
        while container.path.exists() and container.is_running():
            await asyncio.sleep(0.05)
        if not container.path.exists():
            return
        st = container.state()
        app["exits"][container.id] = st
        code = st.exit_code if st.exit_code is not None else 0
        bus.publish("container", "die", container.id, exitCode=str(code), **attrs)
        if container.id in app["autoremove"]:
            await asyncio.get_running_loop().run_in_executor(app["pool"], container.remove, True)
            app["autoremove"].discard(container.id)
            bus.publish("container", "destroy", container.id, **attrs)

    task = asyncio.get_running_loop().create_task(watch())
    app["tasks"].add(task)
    task.add_done_callback(app["tasks"].discard)


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers at once (the docker CLI waits for them before it starts the container), then
    `{"StatusCode": N}` when the condition holds: not-running (default), next-exit or removed."""
    container = get(request)
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition {condition!r}")
    first = last = container.state()
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    while True:
        st = container.state()
        gone = not container.path.exists()
        if gone:
            st = request.app["exits"].get(container.id, last)  # an --rm container: its exit, as recorded
        elif st.status != "created" or first.status == "created":
            last = st
        running = not gone and container.is_running()
        if condition == "removed":
            done = gone
        elif condition == "next-exit":
            done = gone or (not running and st.status == "exited" and (first.status != "exited" or st != first))
        else:
            done = gone or not running
        if done:
            break
        if request.transport is None or request.transport.is_closing() or stopping(request):
            return resp
        await asyncio.sleep(0.05)
    code = st.exit_code if st.exit_code is not None else 0
    body: dict[str, Any] = {"StatusCode": code, "Error": {"Message": st.error} if st.error else None}
    await resp.write(__import__("json").dumps(body).encode() + b"\n")
    return resp


async def stop(request: web.Request) -> web.Response:
    container = get(request)
    if not container.is_running():
        return web.Response(status=304)
    timeout = qint(request, "t", 10)
    await blocking(request, container.stop, float(timeout))
    request.app["events"].publish("container", "stop", container.id, name=container.config.name,
                                  image=container.config.image_ref)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    container = get(request)
    if not container.is_running():
        raise ApiError(409, f"Cannot kill container: {container.short_id}: Container {container.id} is not running")
    text = request.query.get("signal", "SIGKILL").upper()
    try:
        signum = int(text) if text.isdigit() else int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise ApiError(400, f"invalid signal: {text}") from None
    container.kill(signum)
    request.app["events"].publish("container", "kill", container.id, signal=str(signum), name=container.config.name,
                                  image=container.config.image_ref)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    container = get(request)
    await blocking(request, container.stop, float(qint(request, "t", 10)))
    await blocking(request, container.start_detached)
    _started(request.app, container)
    return web.Response(status=204)


async def resize(request: web.Request) -> web.Response:
    get(request)  # the terminal keeps the size the supervisor gave it
    return web.Response(status=200)


async def delete(request: web.Request) -> web.Response:
    container = get(request)
    if container.is_running() and not qbool(request, "force"):
        raise ApiError(409, f"You cannot remove a running container {container.id}. Stop the container before "
                            f"attempting removal or force remove")
    await blocking(request, container.remove, True)
    request.app["events"].publish("container", "destroy", container.id, name=container.config.name,
                                  image=container.config.image_ref)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    def work() -> dict[str, Any]:
        from builder.serve.system import _du

        deleted, freed = [], 0
        for c in _all(request.app["root"]).list():
            if not c.is_running():
                freed += _du(c.path / "upper")
                c.remove(force=False)
                deleted.append(c.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": freed}

    return json_response(await blocking(request, work))


# -- views ----------------------------------------------------------------------------------------

def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) if text else 0


def _ports(c: Any, running: bool) -> list[dict[str, Any]]:
    return [{"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol}
            if running else {"PrivatePort": p.container_port, "Type": p.protocol} for p in c.config.ports]


def summary(c: Any) -> dict[str, Any]:
    from runtime.containers import format_status

    st = c.state()
    running = c.is_running()
    return {"Id": c.id, "Names": ["/" + c.config.name], "Image": c.config.image_ref, "ImageID": c.config.image,
            "Command": " ".join(c.config.process.argv), "Created": _epoch(c.config.created),
            "Ports": _ports(c, running), "Labels": {}, "State": "running" if running else st.status,
            "Status": format_status(st), "HostConfig": {"NetworkMode": c.config.network.value},
            "NetworkSettings": {"Networks": _network(c, running, {})["Networks"]}, "Mounts": []}


def _list(root: Path, every: bool, wanted: dict[str, list[str]]) -> list[dict[str, Any]]:
    store = _all(root)
    store.sweep()
    out = []
    for c in store.list():
        s = summary(c)
        if not every and s["State"] != "running" and "status" not in wanted:
            continue
        if _keep(s, wanted):
            out.append(s)
    return out


def _keep(s: dict[str, Any], wanted: dict[str, list[str]]) -> bool:
    for key, values in wanted.items():
        if key == "status" and s["State"] not in values:
            return False
        if key == "name" and not any(v.lstrip("/") in s["Names"][0] for v in values):
            return False
        if key == "id" and not any(s["Id"].startswith(v) for v in values):
            return False
        if key == "ancestor" and not any(v in (s["Image"], s["ImageID"]) for v in values):
            return False
        if key == "label":
            return False  # pybuild keeps no container labels
        if key not in ("status", "name", "id", "ancestor", "label"):
            raise ApiError(400, f"invalid filter '{key}'")
    return True


async def list_containers(request: web.Request) -> web.Response:
    rows = await blocking(request, _list, request.app["root"], qbool(request, "all"), filters(request))
    limit = qint(request, "limit", -1)
    return json_response(rows[:limit] if limit > 0 else rows)


def describe(c: Any, auto_remove: bool = False, exec_ids: list[str] | None = None) -> dict[str, Any]:
    st = c.state()
    running = c.is_running()
    cfg = c.config
    ports = {f"{p.container_port}/{p.protocol}": [{"HostIp": p.host_ip, "HostPort": str(p.host_port)}]
             for p in cfg.ports}
    return {
        "Id": c.id, "Created": cfg.created, "Path": cfg.process.argv[0] if cfg.process.argv else "",
        "Args": list(cfg.process.argv[1:]),
        "State": {"Status": "running" if running else st.status, "Running": running, "Paused": False,
                  "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": st.init_pid if running else 0,
                  "ExitCode": st.exit_code or 0, "Error": st.error,
                  "StartedAt": st.started or "0001-01-01T00:00:00Z", "FinishedAt": st.finished or "0001-01-01T00:00:00Z"},
        "Image": cfg.image, "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "LogPath": str(c.json_log_path),
        "Name": "/" + cfg.name, "RestartCount": 0, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": exec_ids or None,
        "HostConfig": {"NetworkMode": cfg.network.value, "AutoRemove": auto_remove,
                       "LogConfig": {"Type": "json-file", "Config": {}},
                       "ReadonlyRootfs": cfg.read_only, "Memory": cfg.limits.memory_bytes or 0,
                       "NanoCpus": int((cfg.limits.cpus or 0) * 1e9), "PidsLimit": cfg.limits.pids,
                       "PortBindings": {k: [{"HostIp": b["HostIp"], "HostPort": b["HostPort"]} for b in v]
                                        for k, v in ports.items()},
                       "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                                 for m in cfg.mounts if m.type == "bind"],
                       "ExtraHosts": [f"{name}:{ip}" for name, ip in cfg.process.extra_hosts] or None,
                       "ShmSize": cfg.process.shm_size or 64 << 20},
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": str(c.path / "upper"),
                                                     "LowerDir": ":".join(cfg.lower)}},
        "Mounts": [{"Type": m.type, "Source": m.source, "Destination": m.target, "RW": not m.readonly}
                   for m in cfg.mounts],
        "Config": {"Hostname": cfg.process.hostname, "User": cfg.process.user,
                   "Env": [f"{k}={v}" for k, v in cfg.process.env], "Cmd": list(cfg.process.argv),
                   "Image": cfg.image_ref, "WorkingDir": cfg.process.cwd, "Entrypoint": None,
                   "Tty": cfg.process.tty, "OpenStdin": cfg.process.stdin, "Labels": {},
                   "ExposedPorts": {k: {} for k in ports}},
        "NetworkSettings": _network(c, running, ports),
    }


def _network(c: Any, running: bool, ports: dict[str, Any]) -> dict[str, Any]:
    """The bridge address and gateway of a running container (testcontainers connects through them)."""
    from runtime.network import GATEWAY, SUBNET
    from runtime.spec import NetworkMode

    ip = gateway = ""
    if running and c.config.network == NetworkMode.BRIDGE:
        from runtime.network import address_of

        ip, gateway = address_of(c.id) or "", GATEWAY
    entry = {"IPAddress": ip, "Gateway": gateway, "IPPrefixLen": SUBNET.prefixlen if ip else 0, "MacAddress": "",
             "NetworkID": c.config.network.value, "EndpointID": ""}
    return {"Ports": ports if running else {}, "IPAddress": ip, "Gateway": gateway,
            "Networks": {c.config.network.value: entry}}


async def inspect(request: web.Request) -> web.Response:
    c = get(request)
    ids = [e.id for e in request.app["execs"].values() if e.container.id == c.id and e.running]
    return json_response(describe(c, c.id in request.app["autoremove"], ids))


# -- output: logs and attach ------------------------------------------------------------------------

class _Output:
    """Follows a container's json-file log (`runtime.containers.LogReader`): entries of the wanted
    streams as Docker's multiplexed frames (stream byte 1 or 2), or raw for a container with a
    terminal; `timestamps` prefixes each entry with its time, as dockerd. `live` (attach) also
    passes on the provisional entries of unfinished lines, and then only the rest of their line."""

    def __init__(self, container: Any, request: web.Request, from_start: bool = True, live: bool = False) -> None:
        from runtime.containers import LogReader

        self.reader = LogReader(container.json_log_path)
        self.raw = container.config.process.tty
        self.streams = {s for s in ("stdout", "stderr") if qbool(request, s)}
        self.timestamps = qbool(request, "timestamps")
        self.live = live
        self.shown = {"stdout": 0, "stderr": 0}  # bytes of the unfinished line sent already
        if not from_start:
            self.reader.read()  # what is there already

    def read(self) -> list[Any]:
        entries = self.reader.read()
        if not self.live:
            return [e for e in entries if e.stream in self.streams]
        out = []
        for e in entries:
            if e.provisional:
                self.shown[e.stream] += len(e.data)
            elif self.shown[e.stream]:
                e = e._replace(data=e.data[self.shown[e.stream]:])
                self.shown[e.stream] = 0
            if e.stream in self.streams and e.data:
                out.append(e)
        return out

    def encode(self, entries: list[Any]) -> bytes:
        out = bytearray()
        run: list[bytes] = []
        for i, e in enumerate(entries):
            run.append(e.time.encode() + b" " + e.data if self.timestamps else e.data)
            if i + 1 == len(entries) or entries[i + 1].stream != e.stream:
                out += b"".join(run) if self.raw else frame(2 if e.stream == "stderr" else 1, b"".join(run))
                run = []
        return bytes(out)

    def close(self) -> None:
        self.reader.close()


def _api_time(request: web.Request, key: str) -> int:
    """`since`/`until` as the docker CLI sends them (`1607370000.123456789`, or Unix seconds) in ns;
    0 when absent."""
    text = request.query.get(key, "")
    secs, _, frac = text.partition(".")
    if not secs.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        if not text:
            return 0
        raise ApiError(400, f"invalid value for {key}: {text!r}")
    return max(0, int(secs) * 1_000_000_000 + int((frac + "000000000")[:9]))


async def logs(request: web.Request) -> web.StreamResponse:
    from runtime.containers import select_entries

    container = get(request)
    if not (qbool(request, "stdout") or qbool(request, "stderr")):
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = -1 if tail_text in ("", "all") else qint(request, "tail")
    since, until = _api_time(request, "since"), _api_time(request, "until")
    follow = qbool(request, "follow") and not (until and until <= time.time_ns())
    out = _Output(container, request)
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
    await resp.prepare(request)
    try:
        if data := out.encode(select_entries(out.read(), since, until, tail)):
            await resp.write(data)
        while follow and container.path.exists() and container.is_running():
            if request.transport is None or request.transport.is_closing() or stopping(request):
                break
            if until and time.time_ns() > until:
                break
            if entries := select_entries(out.read(), since, until):
                await resp.write(out.encode(entries))
            else:
                await asyncio.sleep(0.05)
        if follow and (entries := select_entries(out.read(), since, until)):
            await resp.write(out.encode(entries))
    except ConnectionResetError:
        pass
    finally:
        out.close()
    return resp


async def attach(request: web.Request) -> web.StreamResponse:
    """Hijack the connection (`Upgrade: tcp`, 101) and stream the container's output until it
    exits; `logs=1` starts from its first byte; with `stdin=1` (and a container created with
    OpenStdin, attached before its start) what the client sends is the container's stdin."""
    container = get(request)
    keys = parse_detach_keys(request.query.get("detachKeys", ""))
    first = container.state()
    resp, upgrade = await hijack(request, raw=True)
    transport = request.transport
    assert transport is not None
    stdin = Stdin.of_container(container) if upgrade and qbool(request, "stdin") and container.config.process.stdin and \
        first.status == "created" else None
    if upgrade:  # the connection is ours now: the client may half-close it (no stdin) and still read
        escape = EscapeFilter(keys) if stdin is not None and container.config.process.tty else None
        transport.set_protocol(Hijacked(request.protocol, stdin, escape, transport))
    out = _Output(container, request, from_start=qbool(request, "logs"), live=True)
    since = time.monotonic()
    try:
        while not transport.is_closing() and not stopping(request):
            entries = out.read()
            if entries:
                await send(transport, resp, out.encode(entries), upgrade)
                continue
            gone = not container.path.exists()
            st = first if gone else container.state()
            ran = gone or (st.status == "exited" and (first.status != "exited" or st != first))
            if ran and not (not gone and container.is_running()):
                while entries := out.read():
                    await send(transport, resp, out.encode(entries), upgrade)
                break
            if st.status == "created" and not upgrade and not qbool(request, "stream", True):
                break
            await asyncio.sleep(0.02 if time.monotonic() - since < 2 else 0.05)
    except ConnectionResetError:
        pass
    finally:
        out.close()
        if stdin is not None:
            stdin.close()
    if upgrade:
        transport.close()
    return resp


async def send(transport: asyncio.Transport, resp: web.StreamResponse, data: bytes, raw: bool) -> None:
    if not raw:
        await resp.write(data)
        return
    transport.write(data)
    while transport.get_write_buffer_size() > 1 << 20 and not transport.is_closing():
        await asyncio.sleep(0.01)


class Stdin:
    """A process's stdin from a hijacked connection, written without ever blocking the server: for
    a container, a FIFO in its directory that its supervisor opens at start (runtime/supervisor.py),
    held open read-write here so the container sees EOF once the client half-closes
    (`echo x | docker run -i ...`) and not before; for an exec, a pipe's write end."""

    def __init__(self, fd: int, fifo: Path | None = None) -> None:
        self.path = fifo
        os.set_blocking(fd, False)
        self.fd: int | None = fd
        self.pending = bytearray()

    @classmethod
    def of_container(cls, container: Any) -> "Stdin":
        path = container.path / "stdin"
        if not path.exists():
            os.mkfifo(path, 0o600)
        return cls(os.open(path, os.O_RDWR | os.O_NONBLOCK), path)

    def write(self, data: bytes) -> None:
        """Queue `data`; written as the container reads (the FIFO never blocks the server)."""
        if self.fd is None:
            return
        self.pending += data
        self.flush()

    def flush(self) -> None:
        while self.pending and self.fd is not None:
            try:
                n = os.write(self.fd, self.pending[:65536])
            except BlockingIOError:
                asyncio.get_running_loop().call_later(0.02, self.flush)
                return
            except OSError:
                self.pending.clear()
                return
            del self.pending[:n]
        if self.closing and not self.pending:
            if self.path is not None and self.path.exists():  # not opened by the supervisor yet: closing now would drop what is buffered
                asyncio.get_running_loop().call_later(0.02, self.flush)
            else:
                self.close()

    closing = False

    def end(self) -> None:
        """The client closed its stdin: close ours once what it sent is written."""
        self.closing = True
        self.flush()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Hijacked(asyncio.Protocol):
    """A hijacked connection's protocol: what the client sends goes to the container's stdin (or is
    dropped), its half-close keeps the connection open for our output (aiohttp's would close it)
    and ends the stdin, and the connection's end goes on to aiohttp."""

    def __init__(self, http: Any, stdin: Stdin | None, escape: EscapeFilter | None = None,
                 transport: asyncio.BaseTransport | None = None) -> None:
        self.http, self.stdin, self.escape, self.transport = http, stdin, escape, transport
        self.detached = False

    def data_received(self, data: bytes) -> None:
        if self.escape is not None:  # a terminal: the detach keys end the attach, the process runs on
            data, self.detached = self.escape.feed(data)
        if self.stdin is not None and data:
            self.stdin.write(data)
        if self.detached and self.transport is not None:
            self.escape = self.stdin = None
            self.transport.close()

    def eof_received(self) -> bool:
        if self.stdin is not None:
            self.stdin.end()
        return True

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)
