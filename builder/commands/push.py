"""`pybuild push`: push an image from the store to a registry."""

from __future__ import annotations

import argparse
import sys

from builder.commands._registry_args import add_registry_args, registry_options


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild push [OPTIONS] NAME[:TAG] | NAME@DIGEST"
    p.add_argument("name", metavar="NAME[:TAG]", help="a stored image name, e.g. 127.0.0.1:5000/app:1")
    p.add_argument("--from", dest="source", metavar="IMAGE",
                   help="push this stored image (name or id) instead of NAME's")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the pushed digest")
    p.add_argument("--progress", choices=["auto", "plain", "tty", "json", "quiet"], default="auto", help="progress output")
    add_registry_args(p)


def run(args: argparse.Namespace) -> int:
    from builder.oci.reference import parse_reference
    from builder.transfer import push
    from builder.util.progress import make_progress
    from builder.store import Store

    ref = parse_reference(args.name).with_default_tag()
    if ref.digest and ref.tag:
        from builder.errors import InvalidReferenceError

        raise InvalidReferenceError(f"push NAME:TAG or NAME@DIGEST, not both: {args.name}")
    store = Store.open()
    source = args.source or ref.familiar()
    if not args.quiet:
        print(f"The push refers to repository [{ref.name}]")
    progress = make_progress("quiet" if args.quiet else args.progress, sys.stderr)
    try:
        result = push(store, source, ref, options=registry_options(args), progress=progress)
    finally:
        progress.close()
    if args.quiet:
        print(result.digest)
    else:
        size = len(store.resolve(source).raw_manifest())
        print(f"{ref.tag or 'untagged'}: digest: {result.digest} size: {size} "
              f"(uploaded {result.uploaded} bytes, {result.mounted} mounted, {result.skipped} already there)")
    return 0
