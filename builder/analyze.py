"""The layer-cache analysis tool's public API: what each layer costs and wastes, and why steps missed.

    analyze_image(image, reference="app:1") -> ImageReport      one streaming pass over the layers
    open_image("app:1" | "./layout" | "img.tar" | "reg:5000/app:1") -> (Image, label)

Modules behind it: `analyze_tree` (tar members, whiteouts, the stacked tree), `analyze_efficiency`
(dive's figures), `analyze_layers` (the pass and the corrected figures), `analyze_report` (table,
JSON), `analyze_ci` (thresholds), `analyze_html` (the report page), `analyze_explain` (miss
reasons), `analyze_advice` (rebuild cost per context path, Dockerfile suggestions),
`analyze_cache` (`cache ls/du`, prune policies), `analyze_diff` (two images compared).
Images come from the store's, layout's, archive's and registry's own readers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from builder.analyze_layers import FileRef, ImageReport, LayerReport, LayerSource, analyze_layers
from builder.errors import ImageFormatError

if TYPE_CHECKING:
    from builder.oci.image import Image

__all__ = ["FileRef", "ImageReport", "LayerReport", "LayerSource", "analyze_image", "analyze_layers",
           "layer_sources", "open_image"]


def layer_sources(image: "Image") -> list[LayerSource]:
    """One `LayerSource` per layer, named by the history entry that made it (empty layers skipped)."""
    config = image.config()
    made = [h.created_by for h in config.history if not h.empty_layer]
    layers = list(image.layers())
    if len(made) != len(layers):
        made = [""] * len(layers)  # no usable history: dive says "(missing)", we leave it blank
    return [LayerSource(open=layer.open_uncompressed, digest=str(layer.digest), diff_id=str(layer.diff_id),
                        media_type=layer.media_type, compressed_size=layer.size, created_by=made[i])
            for i, layer in enumerate(layers)]


def analyze_image(image: "Image", *, reference: str = "", base_layers: int = 1) -> ImageReport:
    """Analyse an image's layers in one streaming pass."""
    cfg = image.config()
    config = {"id": str(image.id), "platform": str(cfg.platform), "created": cfg.created or "",
              "history": [h.to_dict() for h in cfg.history], "config": cfg.config.to_dict()}
    return analyze_layers(layer_sources(image), reference=reference or str(image.id), base_layers=base_layers,
                          config=config)


def open_image(arg: str) -> tuple["Image", str]:
    """An image by what the user typed: an OCI layout directory, an OCI or docker archive, a
    local image (tag, name@digest, id) or a registry reference. Returns the image and a label."""
    path = Path(arg)
    if path.is_dir():
        from builder.oci import layout

        return layout.read_layout(path), f"oci:{arg}"  # type: ignore[attr-defined]
    if path.is_file():
        from builder.oci import archive

        return archive.read_archive(path), f"archive:{arg}"  # type: ignore[attr-defined]
    from builder.errors import StoreError
    from builder.store import Store

    try:
        return Store.open().resolve(arg), arg
    except StoreError as local_error:
        if not _looks_remote(arg):
            raise
        try:
            return _remote_image(arg), arg
        except ImageFormatError:
            raise
        except Exception:
            raise local_error from None


def _looks_remote(ref: str) -> bool:
    first = ref.split("/", 1)[0]
    return "/" in ref and ("." in first or ":" in first or first == "localhost")


def _remote_image(ref: str) -> "Image":
    from builder.oci import registry

    return registry.remote_image(ref)  # type: ignore[attr-defined]


def default_root() -> Path:
    env = os.environ.get("PYBUILD_ROOT")
    if env:
        return Path(env)
    return Path("/var/lib/pybuild") if os.geteuid() == 0 else Path.home() / ".local/share/pybuild"
