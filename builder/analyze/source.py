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

from pathlib import Path
from typing import TYPE_CHECKING

from builder.analyze.layers import FileRef, ImageReport, LayerReport, LayerSource, analyze_layers
from builder.errors import ImageFormatError, InvalidReferenceError, StoreError

if TYPE_CHECKING:
    from builder.oci.image import Image

__all__ = ["FileRef", "ImageReport", "LayerReport", "LayerSource", "analyze_image", "analyze_layers",
           "layer_sources", "open_image", "reads_one_at_a_time"]


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


def analyze_image(image: "Image", *, reference: str = "", base_layers: int = 1, readers: int = 2) -> ImageReport:
    """Analyse an image's layers in one streaming pass; `readers=1` for images read from a tar
    archive (its layers share one file handle, so they cannot be read at once)."""
    cfg = image.config()
    config = {"id": str(image.id), "platform": str(cfg.platform), "created": cfg.created or "",
              "history": [h.to_dict() for h in cfg.history], "config": cfg.config.to_dict()}
    return analyze_layers(layer_sources(image), reference=reference or str(image.id), base_layers=base_layers,
                          config=config, readers=readers)


def reads_one_at_a_time(arg: str) -> bool:
    """True when `arg` names a tar archive: its layers must be read one after another."""
    return Path(arg).is_file()


def open_image(arg: str, *, remote: bool = False, platform: str | None = None) -> tuple["Image", str]:
    """An image by what the user typed: an OCI layout directory, an OCI or docker archive (tar),
    a local image (tag, name@digest, id) or a registry reference. Returns the image and a label;
    of a multi-platform image, its image for `platform` (default: this machine's).

    A registry image is read from the registry, each layer streamed when it is read (nothing is
    pulled first, nothing lands in the user's store); only with `remote`.
    """
    if not arg.strip():
        raise InvalidReferenceError("empty image name", hint="name a local image, a layout or archive path, "
                                    "or a registry reference")
    path = Path(arg)
    if path.exists():
        if not (path.is_file() or path.is_dir()):  # a pipe cannot be read twice, nor opened without a writer
            raise ImageFormatError(f"{path}: not a regular file or a directory",
                                   hint="save the archive to a file first (e.g. docker save -o app.tar app)")
        try:
            return _from_file(path, platform), str(path)
        except ImageFormatError as exc:  # the readers name the member, not always the file
            if exc.message.startswith(str(path)):
                raise
            raise ImageFormatError(f"{path}: {exc.message}", hint=exc.hint) from None
    from builder.oci.platform import parse
    from builder.store import Store

    store = Store.open()
    want = parse(platform) if platform else None
    try:
        return store.resolve(arg, want), arg
    except StoreError as local_error:
        if not remote or not _looks_remote(arg):
            raise local_error from None
    from builder.oci.reference import parse_reference
    from builder.registry.remote import image as remote_image

    return remote_image(parse_reference(arg), platform=want), arg  # layers stream from the registry as read


def _from_file(path: Path, platform: str | None = None) -> "Image":
    from builder.oci.image import BasicImage, BlobLayer
    from builder.oci.layout import LayoutSource, read_oci_layout

    src = LayoutSource(path)
    if src.has("index.json"):
        from builder.oci.platform import parse

        images = read_oci_layout(src, parse(platform) if platform else None)
        if not images:
            raise ImageFormatError(f"{path}: the OCI layout holds no image")
        return images[0][0]
    if src.has("manifest.json"):  # a docker-archive: layers are tar members, often uncompressed
        import functools

        from builder.oci.archive import _read_docker_archive
        from builder.oci.compress import detect, media_type_for

        config_image, _tags, names = _read_docker_archive(src)[0]
        diff_ids = config_image.config().diff_ids
        if len(diff_ids) != len(names):
            raise ImageFormatError(f"{path}: {len(names)} layers for {len(diff_ids)} diff_ids")
        layers = []
        for name, diff_id in zip(names, diff_ids):
            with src.open(name) as f:
                media_type = media_type_for(detect(f.read(4)))
                size = f.seek(0, 2)
            layers.append(BlobLayer(diff_id, diff_id, size, media_type, functools.partial(src.open, name)))
        return BasicImage(config_image.raw_config(), tuple(layers))
    raise ImageFormatError(f"{path}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)")


def _looks_remote(ref: str) -> bool:
    first = ref.split("/", 1)[0]
    return "/" in ref and ("." in first or ":" in first or first == "localhost")
