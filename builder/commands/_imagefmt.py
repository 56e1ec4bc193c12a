"""Shared formatting for the image commands: sizes and ages as `docker images` prints them."""

from __future__ import annotations

from datetime import datetime, timezone


def human_size(n: int) -> str:
    """Decimal units, as Docker: 1.24MB, 532kB, 12B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n}B"


def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    text = stamp.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def human_age(stamp: str | None, now: datetime | None = None) -> str:
    """`3 minutes ago`, `2 years ago`; `N/A` when unknown."""
    when = parse_time(stamp)
    if when is None:
        return "N/A"
    secs = ((now or datetime.now(timezone.utc)) - when).total_seconds()
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = int(secs // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago" if secs >= 0 else "In the future"


def table(rows: list[list[str]]) -> str:
    """Columns padded like Docker's tables (3 spaces between columns)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
