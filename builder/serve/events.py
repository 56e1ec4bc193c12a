"""`GET /events`: what the server did (build, tag, untag, delete, pull, push, load, container
create/start/die/destroy), kept in memory for replays with `since` and streamed live."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class EventBus:
    """Events in Docker's shape; `publish` may be called from any thread."""

    KEEP = 1000

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.past: list[dict[str, Any]] = []
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, kind: str, action: str, actor: str, **attributes: str) -> None:
        now = time.time_ns()
        event = {"status": action, "id": actor, "Type": kind, "Action": action,
                 "Actor": {"ID": actor, "Attributes": attributes}, "scope": "local",
                 "time": now // 1_000_000_000, "timeNano": now}
        if kind == "image" and "name" in attributes:
            event["id"] = attributes["name"] if action in ("tag", "untag", "pull", "push") else actor
        if kind == "container":
            event["from"] = attributes.get("image", "")
        try:
            running = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            running = False
        if running:
            self._add(event)
        else:
            self.loop.call_soon_threadsafe(self._add, event)

    def _add(self, event: dict[str, Any]) -> None:
        self.past.append(event)
        del self.past[:-self.KEEP]
        for q in self.listeners:
            q.put_nowait(event)


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's event filters: type, event (action), image, container, label is ignored."""
    attrs = event["Actor"]["Attributes"]
    for key, values in filters.items():
        if key == "type" and event["Type"] not in values:
            return False
        if key == "event" and event["Action"] not in values:
            return False
        if key == "container" and (event["Type"] != "container" or not any(
                v in (event["Actor"]["ID"], attrs.get("name")) or event["Actor"]["ID"].startswith(v) for v in values)):
            return False
        if key == "image" and not any(v in (event["Actor"]["ID"], attrs.get("name"), attrs.get("image"))
                                      for v in values):
            return False
    return True
