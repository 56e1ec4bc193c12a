"""System endpoints: `/_ping`, `/version`, `/info`, `/events`, `/system/df`, `/build/prune`, `/auth`."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from builder.serve.api import (API_VERSION, MIN_API_VERSION, ApiError, blocking, filters, json_body, json_response, qint,
                               stopping)
from builder.serve.events import matches

ENGINE_VERSION = "20.10.24-pybuild"  # what `docker version` shows as the server's version


def routes(r: Any) -> None:
    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)
    r.add("GET", "/version", version)
    r.add("GET", "/info", info)
    r.add("GET", "/events", events)
    r.add("GET", "/system/df", system_df)
    r.add("POST", "/build/prune", build_prune)
    r.add("POST", "/auth", auth)


def _headers() -> dict[str, str]:
    return {"API-Version": API_VERSION, "Builder-Version": "1", "Docker-Experimental": "false",
            "OSType": "linux", "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
            "Server": f"Docker/{ENGINE_VERSION} (linux)"}


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK" if request.method == "GET" else None, headers=_headers(),
                        content_type="text/plain")


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


async def version(request: web.Request) -> web.Response:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        ours = dist_version("pybuild")
    except PackageNotFoundError:
        ours = "dev"
    details = {"ApiVersion": API_VERSION, "Arch": _arch(), "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
               "KernelVersion": platform.release(), "Experimental": "false", "GitCommit": "", "GoVersion": "",
               "BuildTime": ""}
    body = {"Platform": {"Name": f"pybuild {ours}"},
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
            "Version": ENGINE_VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": _arch(),
            "KernelVersion": platform.release(), "BuildTime": ""}
    return json_response(body, headers=_headers())


def _info(root: Path) -> dict[str, Any]:
    from builder.containers import containers
    from builder.store import Store

    store = Store.open(root)
    listed = containers(root).list()
    running = sum(c.is_running() for c in listed)
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    os_name = "Linux"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.partition("=")[2].strip('"')
    except OSError:
        pass
    cgroup_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    return {
        "ID": "pybuild", "Containers": len(listed), "ContainersRunning": running, "ContainersPaused": 0,
        "ContainersStopped": len(listed) - running, "Images": len(store.images()), "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "pybuild store"], ["Store", str(root)]],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "none"], "Authorization": None, "Log": []},
        "MemoryLimit": True, "SwapLimit": False, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True, "BridgeNfIptables": False,
        "BridgeNfIp6tables": False, "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": False, "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z",
                                                                              time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if cgroup_v2 else "1",
        "NEventsListener": 0, "KernelVersion": platform.release(), "OperatingSystem": os_name,
        "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem, "GenericResources": None, "DockerRootDir": str(root),
        "HttpProxy": os.environ.get("HTTP_PROXY", ""), "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""), "Name": platform.node(), "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": ENGINE_VERSION,
        "Runtimes": {"pybuild": {"path": "pybuild"}}, "DefaultRuntime": "pybuild",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""}, "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
    }


async def info(request: web.Request) -> web.Response:
    return json_response(await blocking(request, _info, request.app["root"]))


async def events(request: web.Request) -> web.StreamResponse:
    """Past events since `since`, then live ones until `until` (or the client leaves)."""
    wanted = filters(request)
    since, until = _when(request, "since"), _when(request, "until")
    bus = request.app["events"]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    bus.listeners.add(queue)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        if since is not None:
            for ev in list(bus.past):
                if ev["timeNano"] >= since and (until is None or ev["timeNano"] <= until) and matches(ev, wanted):
                    await resp.write(json.dumps(ev).encode() + b"\n")
        while (until is None or time.time_ns() < until) and not stopping(request):
            timeout = 0.5 if until is None else min(0.5, max(0.0, (until - time.time_ns()) / 1e9))
            try:
                ev = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                continue
            if (since is None or ev["timeNano"] >= since) and matches(ev, wanted):
                await resp.write(json.dumps(ev).encode() + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        bus.listeners.discard(queue)
    return resp


def _when(request: web.Request, name: str) -> int | None:
    """`since`/`until`: Unix seconds (with a fraction) as the docker CLI sends them."""
    text = request.query.get(name, "")
    if not text:
        return None
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {text!r} (expected Unix seconds)") from None


def _df(root: Path) -> dict[str, Any]:
    from builder.analyze.cache import cache_rows
    from builder.containers import containers
    from builder.serve.images import image_summaries

    cache = [{"ID": r.key.split(":", 1)[-1][:25], "Parent": "", "Type": r.kind.lower() or "regular",
              "Description": r.instruction or r.kind, "InUse": False, "Shared": False, "Size": r.size,
              "CreatedAt": _iso(r.created), "LastUsedAt": _iso(r.last_used), "UsageCount": r.hits}
             for r in cache_rows(root)]
    ctrs = [{"Id": c.id, "Names": ["/" + c.config.name], "Image": c.config.image_ref,
             "ImageID": c.config.image, "Command": " ".join(c.config.process.argv), "State": c.state().status,
             "Status": c.state().status, "SizeRw": _du(c.path / "upper"), "SizeRootFs": 0,
             "Created": int(c.path.stat().st_mtime), "Mounts": [], "Labels": {}}
            for c in containers(root).list()]
    images = image_summaries(root, {}, all_images=True)
    return {"LayersSize": sum(i["Size"] for i in images), "Images": images, "Containers": ctrs, "Volumes": [],
            "BuildCache": cache}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


async def system_df(request: web.Request) -> web.Response:
    return json_response(await blocking(request, _df, request.app["root"]))


async def build_prune(request: web.Request) -> web.Response:
    """Remove build cache entries (`all`, `keep-storage`, `filters` until/unused-for), then the
    blobs only they kept."""
    from builder.analyze.cache import prune_cache

    wanted = filters(request)
    keep = qint(request, "keep-storage", 0)
    args = [f"{k}={v}" for k, vs in wanted.items() for v in vs if k in ("until", "unused-for")]

    def work() -> dict[str, Any]:
        from builder.cache.policy import build_cache_roots
        from builder.store import Store

        root = request.app["root"]
        result = prune_cache(root, keep_storage=str(keep) if keep else None, filters=args or None)
        Store.open(root).prune(roots=[build_cache_roots(root)])
        return {"CachesDeleted": [r.key for r in result.removed], "SpaceReclaimed": result.freed_bytes}

    return json_response(await blocking(request, work))


async def auth(request: web.Request) -> web.Response:
    """Check credentials against a registry (`docker login`); the client stores them itself."""
    from builder.errors import RegistryError
    from builder.registry.client import RegistryClient
    from builder.registry.credentials import Credentials
    from builder.registry.transport import RegistryOptions

    body = await json_body(request)
    server = str(body.get("serveraddress") or "docker.io")
    host = server.split("://", 1)[-1].split("/", 1)[0]
    host = "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
    creds = Credentials(str(body.get("username", "")), str(body.get("password", "")))

    def check() -> None:
        RegistryClient(host, RegistryOptions.load(), credentials=creds).check_login()

    try:
        await blocking(request, check)
    except RegistryError as exc:
        if exc.status in (401, 403):
            raise ApiError(401, f"login attempt to {server} failed with status: 401 Unauthorized") from None
        raise ApiError(500, exc.message) from None
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})
