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


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    entries = []
    for ref in args.images:
        image = store.resolve(ref)
        tags: list[str] = []
        try:
            tag = normalize_tag(ref)
            if store.tags().get(tag) == image.id:
                tags = [tag]
        except BuildError:
            pass
        entries.append((image, tags))
    if args.output is None and sys.stdout.isatty():
        raise BuildError("pybuild save: refusing to write an archive to a terminal", hint="use -o FILE or redirect")
    dest = args.output if args.output is not None else sys.stdout.buffer
    (write_oci_archive if args.format == "oci" else write_docker_archive)(entries, dest)
    return 0
