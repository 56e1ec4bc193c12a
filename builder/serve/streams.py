"""Streams back to the client: build progress as the legacy builder's `{"stream": ...}` JSON lines
(queued from the build's threads to the event loop), and Docker's multiplexed stdout/stderr frames."""

from __future__ import annotations

import asyncio
import json
import re
import struct
from typing import Any

from builder.errors import BuildError
from builder.util.progress import ByteTask, Progress

_STEP = re.compile(r"\[(?:(?P<label>.+) )?(?P<pos>\d+)/(?P<count>\d+)\] (?P<text>.*)", re.DOTALL)


class ClientGone(BuildError):
    """The client closed the connection: the build stops at its next step or output."""


class StreamProgress(Progress):
    """Build events as the lines `docker build` prints against dockerd's legacy builder:
    `Step 2/3 : RUN make`, ` ---> Using cache`, the step's output. Thread-safe; once `gone` is set
    (the client left), the next step or output raises `ClientGone`, which cancels the build."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any] | None],
                 quiet: bool = False) -> None:
        self.loop, self.queue, self.quiet = loop, queue, quiet
        self.gone = False

    def put(self, message: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    def _say(self, text: str) -> None:
        if self.gone:
            raise ClientGone("the client disconnected: build cancelled")
        if not self.quiet:
            self.put({"stream": text})

    def start(self, step: int, name: str) -> None:
        m = _STEP.fullmatch(name)
        if m is None:  # BuildKit's own steps ([internal] loads, exporting): the legacy builder has none
            if self.gone:
                raise ClientGone("the client disconnected: build cancelled")
        else:
            label = f"[{m['label']}] " if m["label"] else ""
            self._say(f"{label}Step {m['pos']}/{m['count']} : {_familiar_from(m['text'])}\n")

    def cached(self, step: int) -> None:
        self._say(" ---> Using cache\n")

    def output(self, step: int, data: bytes) -> None:
        self._say(data.decode(errors="replace"))

    def info(self, message: str) -> None:
        if not self.gone and not self.quiet:
            self.put({"stream": message.rstrip("\n") + "\n"})


def _familiar_from(text: str) -> str:
    """`FROM docker.io/library/busybox:latest@sha256:...` (BuildKit's resolved name) as the legacy
    builder shows it: `FROM busybox:latest`."""
    m = re.fullmatch(r"FROM (\S+?)(?:@sha256:[0-9a-f]{64})?((?: .*)?)", text, re.DOTALL)
    if m is None:
        return text
    name = m.group(1)
    if name.startswith("docker.io/library/") and name.count("/") == 2:
        name = name[len("docker.io/library/"):]
    elif name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
    return f"FROM {name}{m.group(2)}"


class TransferProgress(Progress):
    """`builder.transfer.pull`'s or `push`'s progress as Docker's messages: `{"status": "Downloading"
    (or "Pushing"), "id": layer, "progressDetail": {"current", "total"}}`, then `Pull complete`,
    `Pushed`, `Layer already exists`, `Mounted from ...`."""

    shows_bytes = True

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any] | None],
                 verb: str = "Downloading") -> None:
        self.loop, self.queue, self.verb = loop, queue, verb

    def put(self, message: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    def info(self, message: str) -> None:
        layer, sep, status = message.partition(": ")
        self.put({"status": status, "progressDetail": {}, "id": layer} if sep and " " not in layer
                 else {"status": message})

    def bytes_task(self, step: int, what: str, total: int | None) -> ByteTask:
        return _Transferring(self, what, total)


class _Transferring(ByteTask):
    def __init__(self, progress: TransferProgress, layer: str, total: int | None) -> None:
        self.progress, self.layer, self.total = progress, layer, total
        self.current, self.shown = 0, 0

    def update(self, n: int) -> None:
        self.current += n
        if self.current - self.shown >= 512 * 1024 or (self.total and self.current >= self.total):
            self.shown = self.current
            self.progress.put({"status": self.progress.verb, "id": self.layer,
                               "progressDetail": {"current": self.current, "total": self.total or 0}})


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: [stream, 0, 0, 0, size (big-endian u32)] + data."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


async def hijack(request: Any, raw: bool) -> tuple[Any, bool]:
    """The response of an attach or exec start: `101 UPGRADED` when the client asked to upgrade the
    connection (it is then ours to read and write), else a plain 200 stream; multiplexed frames
    unless `raw` (a terminal). Returns it prepared, and whether the connection was upgraded."""
    from aiohttp import web

    upgrade = "upgrade" in request.headers.get("Connection", "").lower()
    kind = "application/vnd.docker.raw-stream" if raw else "application/vnd.docker.multiplexed-stream"
    resp = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK",
                              headers={"Content-Type": kind, **({"Connection": "Upgrade", "Upgrade": "tcp"}
                                                                if upgrade else {})})
    await resp.prepare(request)
    return resp, upgrade
