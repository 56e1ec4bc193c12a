"""`pybuild load`: load images from a docker-archive or an OCI layout (tarball or directory)."""

from __future__ import annotations

import argparse
import sys

from builder.store import Store
from builder.transfer import load


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", metavar="FILE", help="read from FILE (a tar, gzip/zstd tar, or layout directory) "
                                                         "instead of stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="print only image ids")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="from a multi-platform index, load this platform's image (default: this machine's)")


def run(args: argparse.Namespace) -> int:
    platform = None
    if args.platform:
        from builder.oci.platform import parse

        platform = parse(args.platform)
    store = Store.open()
    results = load(store, args.input if args.input else sys.stdin.buffer, platform)
    for image_id, tags in results:
        if args.quiet or not tags:
            print(f"Loaded image ID: {image_id}" if not args.quiet else image_id)
        for tag in tags:
            if not args.quiet:
                print(f"Loaded image: {tag}")
    return 0
