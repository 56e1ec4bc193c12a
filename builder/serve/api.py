"""What every handler shares: `ApiError` (a status and Docker's `{"message": ...}` body), query
parsing with Docker's rules, and `blocking()` to run store, build and container work in the
server's thread pool."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any, Callable, TypeVar

from aiohttp import web

from builder.errors import BuildError, InvalidReferenceError, StoreError

T = TypeVar("T")

API_VERSION = "1.41"  # what Debian's docker 20.10 client speaks
MIN_API_VERSION = "1.12"


class ApiError(Exception):
    """An error answered as `{"message": message}` with `status` (400 bad request, 404 no such
    thing, 409 conflict, 500 the operation failed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with the bare `application/json` type: the docker client reads `{"message": ...}` out of
    an error only then (a `; charset=utf-8` suffix makes it print the raw body)."""
    return web.Response(body=json.dumps(body).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker's boolean query values: `1`, `true`, `True` are true; `0`, `false`, empty are false."""
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("", "0", "false", "no"):
        return False
    raise ApiError(400, f"invalid value for {name}: {value!r} is not a boolean")


def qint(request: web.Request, name: str, default: int = 0) -> int:
    value = request.query.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {value!r} is not an integer") from None


def qjson(request: web.Request, name: str, default: Any) -> Any:
    """A JSON-encoded query parameter (`buildargs`, `labels`, `filters`, `cachefrom`)."""
    value = request.query.get(name, "")
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        raise ApiError(400, f"invalid JSON in the {name} parameter") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    """`filters` as Docker sends it: {"key": ["v", ...]} or the older {"key": {"v": true}}."""
    raw = qjson(request, "filters", {})
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if isinstance(values, dict):
            out[key] = [v for v, on in values.items() if on]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[key] = list(values)
        else:
            raise ApiError(400, f"invalid filter {key!r}")
    return out


async def json_body(request: web.Request, limit: int = 1 << 20) -> dict[str, Any]:
    """A JSON object body (container create, tag, auth); empty is `{}`."""
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid JSON body: expected an object")
    return body


def stopping(request: web.Request) -> bool:
    """The server is shutting down: long-lived streams (events, wait, attach, logs, builds) end."""
    return bool(request.app["stopping"].is_set())


async def blocking(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` in the server's thread pool (builds, store and registry work, waits)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app["pool"], functools.partial(fn, *args, **kwargs))


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message of an error raised by the layers below."""
    from grammar.errors import DockerfileError
    from runtime.containers import NoSuchContainer
    from runtime.errors import SandboxError

    if isinstance(exc, ApiError):
        return exc.status, exc.message
    if isinstance(exc, NoSuchContainer):
        return 404, exc.message.replace("no such container", "No such container")
    if isinstance(exc, InvalidReferenceError):
        return 400, exc.message
    if isinstance(exc, StoreError) and "not in the store" in exc.message:
        return 404, exc.message
    if isinstance(exc, BuildError):
        return 500, exc.render()
    if isinstance(exc, DockerfileError):
        return 400, str(exc)
    if isinstance(exc, SandboxError):
        return 500, exc.message
    return 500, f"internal error: {type(exc).__name__}: {exc}"
