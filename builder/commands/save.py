"""`pybuild save`: save images to a docker-archive (default) or an OCI layout tarball."""

from __future__ import annotations

import argparse
import sys

from builder.errors import BuildError
from builder.oci.archive import write_docker_archive
from builder.oci.layout import write_oci_archive
from builder.oci.reference import normalize_tag
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="name[:tag] or image id")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--format", choices=["docker", "oci"], default="docker",
                   help="docker: a `docker load` archive (default); oci: an OCI image layout tarball")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="of a multi-platform image, save this platform's (default: with --format oci, the whole "
                        "index when one image is saved; else this machine's)")


def _tags(store: Store, ref: str, *ids: str) -> list[str]:
    try:
        tag = normalize_tag(ref)
    except BuildError:
        return []
    return [tag] if store.tags().get(tag) in ids else []


def run(args: argparse.Namespace) -> int:
    from builder.oci.platform import parse

    store = Store.open()
    platform = parse(args.platform) if args.platform else None
    if args.output is None and sys.stdout.isatty():
        raise BuildError("pybuild save: refusing to write an archive to a terminal", hint="use -o FILE or redirect")
    dest = args.output if args.output is not None else sys.stdout.buffer
    found = store.index(args.images[0]) if args.format == "oci" and platform is None and len(args.images) == 1 else None
    if found is not None:  # the whole multi-platform image: its index and every platform's image
        from builder.oci.layout import write_oci_index_archive

        images = [store.image_by_manifest(d.digest) for d in found[1].manifests]
        write_oci_index_archive(images, dest, _tags(store, args.images[0], found[0]))
        return 0
    entries = []
    for ref in args.images:
        image = store.resolve(ref, platform)
        index = store.index(ref)
        entries.append((image, _tags(store, ref, image.id, *([index[0]] if index else []))))
    (write_oci_archive if args.format == "oci" else write_docker_archive)(entries, dest)
    return 0
