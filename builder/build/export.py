"""The end of a build: the target stage's image assembled, then written to every `--output`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.job import StageResult
    from builder.build.options import Output
    from builder.oci.image import BasicImage
    from builder.store import Store
    from builder.util.progress import Progress

__all__ = ["assemble", "write_outputs"]


def assemble(store: Store, result: StageResult) -> BasicImage:
    """The target stage's image: base config + stage config, layers, history, created time."""
    from builder.oci.image import BasicImage
    from builder.oci.model import ContainerConfig, History, ImageConfig
    from builder.oci.mutate import rfc3339, source_date_epoch

    stage = result.stage
    epoch = source_date_epoch()
    created = rfc3339(epoch if epoch is not None else result.created)
    base_cfg = result.base_image.config() if result.base_image is not None else ImageConfig()
    cfg = dict(stage.config)
    author = cfg.pop("__author__", None)
    history = [History.from_dict(h) for h in result.history]
    os_, _, rest = stage.platform.partition("/")
    arch, _, variant = rest.partition("/")
    config = ImageConfig(architecture=arch or base_cfg.architecture, os=os_ or base_cfg.os,
                         variant=variant or None, created=created,
                         author=author if author is not None else base_cfg.author,
                         config=ContainerConfig.from_dict(cfg),
                         diff_ids=tuple(l.diff_id for l in result.layers), history=tuple(history))
    layers = tuple(store.layer(l.diff_id) for l in result.layers)
    return BasicImage(config.to_json(), layers)


def write_outputs(store: Store, image: BasicImage, outputs: Sequence[Output], tags: Sequence[str],
                  progress: Progress, compression: str | None = None, level: int | None = None) -> str:
    """Write the image to every output; return the manifest digest.

    The local image keeps the layers as committed; an OCI archive gets them compressed (gzip unless
    `compression=` says otherwise), and so does a push. The digest returned is the pushed
    manifest's if any, else the OCI archive's, else the local image's.
    """
    digest = exported = str(image.digest)
    for out in outputs:
        force = out.get("force-compression", "false").lower() in ("true", "1")  # buildx: convert every layer
        if out.type == "image":  # buildx: name=a,b names it too
            store.put_image(image, list(tags) + [n for n in out.get("name").split(",") if n and n not in tags])
        elif out.type == "oci":
            from builder.oci.layout import write_oci_archive

            packed = store.compressed_image(image, compression or "gzip", level, force=force)
            write_oci_archive(packed, out.get("dest"), tags)
            exported = str(packed.digest)
        elif out.type == "docker":
            from builder.oci.archive import write_docker_archive

            write_docker_archive(image, out.get("dest"), tags)
        elif out.type == "local":
            from builder.oci.archive import export_rootfs_dir

            export_rootfs_dir(image, out.get("dest"))
        elif out.type == "tar":
            from builder.oci.archive import export_rootfs_tar
            from builder.oci.mutate import source_date_epoch

            export_rootfs_tar(image, out.get("dest"), store.tmp_dir(), epoch=source_date_epoch())
        elif out.type == "registry":
            digest = _push(store, image, out, tags, progress, compression, level, force)
    return digest if any(o.type == "registry" for o in outputs) else exported


def _push(store: Store, image: BasicImage, out: Output, tags: Sequence[str], progress: Progress,
          compression: str | None, level: int | None, force: bool) -> str:
    from builder.oci.reference import parse_reference
    from builder.registry.transport import RegistryOptions
    from builder.transfer import push_image

    names = [n for n in out.get("name").split(",") if n] or list(tags)
    if not names:
        raise BuildError("--push needs a name: -t REGISTRY/NAME:TAG or --output type=registry,name=...")
    store.put_image(image)  # the blobs a push reads come from the store
    digest = ""
    for name in names:
        digest = str(push_image(store, image, parse_reference(name).with_default_tag(),
                                options=RegistryOptions.load(), progress=progress,
                                compression=compression or "gzip", level=level, force_compression=force).digest)
    return digest
