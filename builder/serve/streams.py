"""Streams back to the client: build progress as the legacy builder's `{"stream": ...}` JSON lines
(queued from the build's threads to the event loop), and Docker's multiplexed stdout/stderr frames."""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import struct
import threading
from typing import Any

from builder.errors import BuildError
from builder.util.progress import ByteTask, Progress

_STEP = re.compile(r"\[(?:(?P<label>.+) )?(?P<pos>\d+)/(?P<count>\d+)\] (?P<text>.*)", re.DOTALL)


class ClientGone(BuildError):
    """The client closed the connection: the build stops at its next step or output."""


class StreamProgress(Progress):
    """Build events as the lines `docker build` prints against dockerd's legacy builder:
    `Step 2/3 : RUN make`, ` ---> Using cache`, the step's output. Thread-safe; once `gone` is set
    (the client left), the next step or output raises `ClientGone`, which cancels the build.

    With the build's Dockerfile, steps are numbered as the legacy builder numbers them (`LegacySteps`);
    without it, or for a step it cannot place, by pybuild's own stage and position."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any] | None],
                 quiet: bool = False, dockerfile: str = "") -> None:
        self.loop, self.queue, self.quiet, self.dockerfile = loop, queue, quiet, dockerfile
        self.gone = False
        self.steps: LegacySteps | None = None
        self.stages: dict[int, str] = {}  # running step -> its stage label, for the steps LegacySteps placed
        self.lock = threading.Lock()

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
            return
        with self.lock:
            if self.steps is None and self.dockerfile:
                self.steps = LegacySteps.read(self.dockerfile)  # the build has parsed it by now
            lines = self.steps.up_to(m["label"] or "stage-0", int(m["pos"]), m["text"]) if self.steps else None
            if lines is not None:
                self.stages[step] = m["label"] or "stage-0"
        if lines is None:
            label = f"[{m['label']}] " if m["label"] else ""
            lines = [f"{label}Step {m['pos']}/{m['count']} : {_familiar_from(m['text'])}\n"]
        self._say("".join(lines))

    def done(self, step: int) -> None:
        self._ended(step)

    def _ended(self, step: int) -> None:
        """A step is done or came from the cache (the last event of a cached step)."""
        with self.lock:
            label = self.stages.pop(step, None)
            lines = self.steps.trailing(label) if self.steps and label else []
        if lines:
            self._say("".join(lines))

    def finish(self) -> list[dict[str, Any]]:
        """The messages that end a successful build's steps: the lines of the instructions after the
        last step that ran (CMD, ENV, ...)."""
        with self.lock:
            rest = self.steps.rest() if self.steps else []
        return [{"stream": "".join(rest)}] if rest and not self.quiet else []

    def cached(self, step: int) -> None:
        self._say(" ---> Using cache\n")
        self._ended(step)

    def output(self, step: int, data: bytes) -> None:
        self._say(data.decode(errors="replace"))

    def info(self, message: str) -> None:
        if not self.gone and not self.quiet:
            self.put({"stream": message.rstrip("\n") + "\n"})


def _keyword(inst: Any) -> str:
    """The instruction's keyword if it is a step of its own in pybuild's progress (FROM, RUN, COPY, ADD,
    a WORKDIR other than /), else ""."""
    keyword = inst.keyword
    if keyword == "workdir":
        return "" if posixpath.normpath(inst.path.strip() or ".") == "/" else keyword
    return keyword if keyword in ("from", "run", "copy", "add") else ""


class LegacySteps:
    """The legacy builder's step lines: every instruction numbered in Dockerfile order, meta ARGs first,
    out of all of them (`Step 3/10 : env A=1     B=2`, the text as written, continuation lines joined).
    pybuild's progress names only a stage's FROM and its operations (`[a 2/3] RUN ...`); a step's line
    comes with those of the stage's instructions before it that have not been shown (ENV, LABEL, ...)."""

    def __init__(self, dockerfile: Any) -> None:
        rows: list[tuple[str, list[tuple[str, str]]]] = [("", [("arg", _original(a, dockerfile.escape))
                                                                for a in dockerfile.meta_args])]
        for st in dockerfile.stages:
            rows.append((st.name or f"stage-{st.index}",
                         [(_keyword(i), _original(i, dockerfile.escape)) for i in (st.base, *st.instructions)]))
        self.total = sum(len(r) for _, r in rows)
        self.lines: dict[str, list[str]] = {}  # stage label -> its lines, numbered
        self.keywords: dict[str, list[str]] = {}  # per line: its keyword if pybuild makes it a step, else ""
        n = 0
        for label, insts in rows:
            self.lines[label.lower()] = [f"Step {n + k}/{self.total} : {text}\n" for k, (_, text) in enumerate(insts, 1)]
            self.keywords[label.lower()] = [kw for kw, _ in insts]
            n += len(insts)
        self.shown = {"": 0}  # stage label -> how many of its lines went out; meta ARGs go with the first step

    @classmethod
    def read(cls, path: str) -> LegacySteps | None:
        """The steps of the Dockerfile at `path`, or None if it cannot be read (the build reports that)."""
        import grammar
        from grammar.errors import DockerfileError

        try:
            return cls(grammar.parse_file(path))
        except (OSError, DockerfileError, UnicodeDecodeError):
            return None

    def up_to(self, label: str, pos: int, text: str) -> list[str] | None:
        """The lines up to the `pos`-th step of stage `label` (1 = its FROM), or None if pybuild's step
        is not that instruction (e.g. a base image's ONBUILD trigger, or a WORKDIR / that is no step)."""
        keywords = self.keywords.get(label.lower())
        if keywords is None:
            return None
        steps = [i for i, kw in enumerate(keywords) if i == 0 or kw]
        if pos > len(steps) or keywords[steps[pos - 1]] != text.split(" ", 1)[0].lower():
            return None
        out = self._take("", len(self.lines[""]))
        return out + self._take(label.lower(), steps[pos - 1] + 1)

    def trailing(self, label: str) -> list[str]:
        """The rest of stage `label`'s lines if none of them is a step (the instructions that end a
        stage, shown once its last step is done), else none."""
        label = label.lower()
        start = self.shown.get(label, 0)
        return [] if any(self.keywords[label][start:]) else self._take(label, len(self.lines[label]))

    def rest(self) -> list[str]:
        """The unshown lines of every stage that started."""
        return [line for label in list(self.shown) for line in self._take(label, len(self.lines[label]))]

    def _take(self, label: str, end: int) -> list[str]:
        start = self.shown.get(label, 0)
        self.shown[label] = max(start, end)
        return self.lines[label][start:end]


def _original(inst: Any, escape: str) -> str:
    """An instruction's text as the legacy builder prints it: continuation lines joined (each escape at
    a line's end removed, with the line break; empty and comment lines dropped), a heredoc's body left out."""
    lines = inst.raw.replace("\r", "").split("\n")
    if getattr(inst, "heredocs", ()):
        return lines[0]
    kept = [lines[0]] + [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
    return "".join(re.sub(re.escape(escape) + r"[ \t]*$", "", line) for line in kept)


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
