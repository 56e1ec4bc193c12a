"""Functions that derive a new image from an old one; images themselves never change."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import Sequence

from builder.errors import ImageFormatError
from builder.oci.image import BasicImage, Image, Layer
from builder.oci.model import ContainerConfig, History, ImageConfig

__all__ = ["append_layers", "with_config", "with_created", "with_history", "rfc3339", "source_date_epoch"]


def rfc3339(when: int | float | datetime) -> str:
    """A UTC timestamp as Docker writes it: `2024-01-02T03:04:05Z` (fractional seconds if any)."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, tz=timezone.utc)
    when = when.astimezone(timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def source_date_epoch() -> int | None:
    """`SOURCE_DATE_EPOCH` from the environment, or None when unset."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ImageFormatError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, got {value!r}")
    return int(value)


def _derive(base: Image, config: ImageConfig, layers: Sequence[Layer]) -> Image:
    return BasicImage(config.to_json(), tuple(layers), base.manifest().media_type)


def append_layers(base: Image, *layers: Layer, history: Sequence[History] | None = None) -> Image:
    """`base` plus layers on top; one history entry per layer (given, or a plain default)."""
    if history is not None and len(history) != len(layers):
        raise ValueError("append_layers: one history entry per layer")
    config = base.config()
    hist = tuple(history) if history is not None else tuple(History(created_by="pybuild: layer") for _ in layers)
    new = replace(config, diff_ids=config.diff_ids + tuple(l.diff_id for l in layers),
                  history=config.history + hist)
    return _derive(base, new, tuple(base.layers()) + layers)


def with_config(base: Image, config: ContainerConfig | ImageConfig, history: History | None = None) -> Image:
    """`base` with a new run config (Cmd, Env, ...), plus an optional empty-layer history entry.

    Given a whole ImageConfig, only its non-layer fields are taken: layers stay `base`'s.
    """
    old = base.config()
    if isinstance(config, ImageConfig):
        new = replace(config, diff_ids=old.diff_ids, history=old.history)
    else:
        new = replace(old, config=config)
    if history is not None:
        new = replace(new, history=new.history + (replace(history, empty_layer=True),))
    return _derive(base, new, base.layers())


def with_history(base: Image, entry: History) -> Image:
    """`base` with one more history entry (an empty layer: ENV, CMD, LABEL...)."""
    old = base.config()
    return _derive(base, replace(old, history=old.history + (replace(entry, empty_layer=True),)), base.layers())


def with_created(base: Image, when: int | float | datetime | None = None, *, history: bool = True) -> Image:
    """`base` with `created` set to `when` (default: SOURCE_DATE_EPOCH, else now).

    With `history`, history entries newer than `when` (or without a time) are set to it too,
    so a build with SOURCE_DATE_EPOCH is reproducible.
    """
    if when is None:
        epoch = source_date_epoch()
        when = epoch if epoch is not None else datetime.now(timezone.utc)
    stamp = rfc3339(when)
    old = base.config()
    hist = old.history
    if history:
        hist = tuple(h if h.created and h.created <= stamp else replace(h, created=stamp) for h in hist)
    return _derive(base, replace(old, created=stamp, history=hist), base.layers())
