"""The aiohttp application: routes with and without Docker's `/vX.Y` prefix, the version check,
errors as `{"message": ...}` (never a traceback), and the run loop over every listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from builder.errors import BuildError
from builder.serve.api import API_VERSION, MIN_API_VERSION, ApiError, error_response, status_of
from builder.serve.events import EventBus
from builder.serve.options import ServeOptions

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("pybuild.serve")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("_v", "")
    if version:
        if _version(version[1:]) > _version(API_VERSION):
            return error_response(400, f"client version {version[1:]} is too new. "
                                       f"Maximum supported API version is {API_VERSION}")
        if _version(version[1:]) < _version(MIN_API_VERSION):
            return error_response(400, f"client version {version[1:]} is too old. "
                                       f"Minimum supported API version is {MIN_API_VERSION}, "
                                       f"please upgrade your client to a newer version")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, "page not found" if exc.status == 404 else exc.reason)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - every other failure is a 4xx/5xx with a message
        status, message = status_of(exc)
        if status == 500 and not isinstance(exc, BuildError):
            log.error("%s %s failed:\n%s", request.method, request.path, traceback.format_exc())
        return error_response(status, message)


class Router:
    """Adds each route at `path` and at `/v{X.Y}path`, as dockerd does."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/{_v:v[0-9]+\.[0-9]+}" + path, handler)


def make_app(options: ServeOptions) -> web.Application:
    from builder.serve import build, containers, execs, images, system
    from builder.util.paths import default_root

    app = web.Application(middlewares=[_errors], client_max_size=1 << 20, handler_args={"max_field_size": 65536})
    app["options"] = options
    app["root"] = Path(options.store_root) if options.store_root else default_root()
    app["pool"] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="serve")
    router = Router(app)
    for module in (system, build, images, containers, execs):
        module.routes(router)

    async def on_startup(app: web.Application) -> None:
        app["events"] = EventBus(asyncio.get_running_loop())
        app["stopping"] = asyncio.Event()  # set at SIGTERM: streams end, builds stop at their next step
        app["tasks"] = set()  # container watchers (die events, --rm)
        app["exits"] = {}  # container id -> its state when it exited (wait on removed containers)
        app["autoremove"] = set()  # ids of --rm containers this server removes when they exit
        app["execs"] = {}  # exec id -> builder.serve.execs.Exec

    async def on_cleanup(app: web.Application) -> None:
        app["pool"].shutdown(wait=False, cancel_futures=True)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def run(options: ServeOptions) -> None:
    """Serve until SIGINT or SIGTERM."""
    from builder.serve.listen import cleanup, sites

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="pybuild serve: %(message)s")
    app = make_app(options)
    cleanup(app["root"])

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=False, shutdown_timeout=5.0)
        await runner.setup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bound: list[str] = []  # our unix sockets (never another server's): removed at the end
        try:
            for site in sites(runner, options, bound):
                await site.start()
                log.info("listening on %s", site.name)
            await stop.wait()
            app["stopping"].set()
            await asyncio.sleep(0.5)  # streams notice and end; then aiohttp closes what is left
        finally:
            await runner.cleanup()
            for path in bound:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    asyncio.run(main())

