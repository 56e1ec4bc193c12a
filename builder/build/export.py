"""The end of a build: the target stage's image assembled, then written to every `--output`; a
multi-platform build's images as one OCI index (`write_index_outputs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.job import StageResult
    from builder.build.options import Output
    from builder.oci.image import BasicImage
    from builder.store import Store
    from builder.util.progress import Progress

__all__ = ["assemble", "write_outputs", "write_index_outputs"]


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
    if stage.platform:
        from builder.oci.platform import normalize, parse

        plat = normalize(parse(stage.platform))
        os_, arch, variant = plat.os, plat.architecture, plat.variant
    else:
        os_, arch, variant = base_cfg.os, base_cfg.architecture, None
    config = ImageConfig(architecture=arch, os=os_, variant=variant, created=created,
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


def _platform_dir(image: BasicImage) -> str:
    """buildx's directory name for a platform's files: `linux_arm64`, `linux_arm_v7`."""
    from builder.oci.platform import format_platform

    return format_platform(image.config().platform).replace("/", "_")


def write_index_outputs(store: Store, images: Sequence[BasicImage], outputs: Sequence[Output], tags: Sequence[str],
                        progress: Progress, compression: str | None = None, level: int | None = None) -> str:
    """Write a multi-platform build (one image per platform, in `--platform` order) to every output
    as BuildKit does: the store gets the images and their index, tagged; `oci` an OCI layout whose
    index.json names the index; `local` and `tar` one directory per platform (`linux_arm64/`); `registry`
    every image, then the index. Returns the index digest: the pushed one if any, else the OCI
    archive's, else the stored one."""
    from builder.oci.image import index_of

    bad = [o.type for o in outputs if o.type not in ("image", "oci", "local", "tar", "registry")]
    if bad:
        raise BuildError(f"--output type={bad[0]} cannot hold a multi-platform image ({len(images)} platforms"
                         + ("; Docker's archive format has no index)" if bad[0] == "docker" else ")"),
                         hint="use type=oci, type=local, type=tar, type=image or --push, or build one --platform")
    seen: set[str] = set()
    for image in images:
        name = str(image.config().platform)
        if name in seen:  # e.g. --target of a FROM --platform=$BUILDPLATFORM stage: one platform, built once
            raise BuildError(f"the target stage is built for {name} whatever the --platform, so the index would "
                             f"hold {name} twice", hint="build that stage with one --platform, or target a stage "
                                                      "built for each platform")
        seen.add(name)
    for image in images:
        store.put_image(image)
    stored = str(store.put_index(index_of(images), tags if any(o.type == "image" for o in outputs) else ()))
    digest = exported = stored
    for out in outputs:
        force = out.get("force-compression", "false").lower() in ("true", "1")
        if out.type == "oci":
            from builder.oci.layout import write_oci_index_archive

            packed = [store.compressed_image(img, compression or "gzip", level, force=force) for img in images]
            exported = str(write_oci_index_archive(packed, out.get("dest"), tags))
        elif out.type == "local":
            import os

            from builder.oci.archive import export_rootfs_dir

            for image in images:
                export_rootfs_dir(image, os.path.join(out.get("dest"), _platform_dir(image)))
        elif out.type == "tar":
            from builder.oci.archive import export_rootfs_tar
            from builder.oci.mutate import source_date_epoch

            export_rootfs_tar({_platform_dir(img): img for img in images}, out.get("dest"), store.tmp_dir(),
                              epoch=source_date_epoch())
        elif out.type == "registry":
            from builder.oci.reference import parse_reference
            from builder.registry.transport import RegistryOptions
            from builder.transfer import push_index

            names = [n for n in out.get("name").split(",") if n] or list(tags)
            if not names:
                raise BuildError("--push needs a name: -t REGISTRY/NAME:TAG or --output type=registry,name=...")
            for name in names:
                digest = str(push_index(store, images, parse_reference(name).with_default_tag(),
                                        options=RegistryOptions.load(), progress=progress,
                                        compression=compression or "gzip", level=level, force_compression=force,
                                        index_id=stored).digest)
    return digest if any(o.type == "registry" for o in outputs) else exported
