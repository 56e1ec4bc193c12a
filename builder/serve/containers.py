"""Container endpoints."""

from __future__ import annotations

from typing import Any


def routes(r: Any) -> None:
    pass
