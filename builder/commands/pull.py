"""`pybuild pull`: pull an image from a registry into the store."""

from __future__ import annotations

import argparse
import sys

from builder.commands._registry_args import add_registry_args, registry_options


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild pull [OPTIONS] NAME[:TAG|@DIGEST]"
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]", help="image reference, e.g. tomcat:alpine")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]|all",
                   help="platform to pull from a multi-arch index (default: this machine's); 'all' pulls every "
                        "platform's image and keeps the index, which the name then points at")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the pulled reference")
    p.add_argument("--progress", choices=["auto", "plain", "tty", "json", "quiet"], default="auto", help="progress output")
    add_registry_args(p)


def run(args: argparse.Namespace) -> int:
    from builder.oci.reference import parse_reference
    from builder.oci.platform import parse as parse_platform
    from builder.transfer import pull, pull_all
    from builder.util.progress import make_progress
    from builder.store import Store

    ref = parse_reference(args.name)
    if not ref.tag and not ref.digest:
        if not args.quiet:
            print("Using default tag: latest")
        ref = ref.with_default_tag()
    say = (lambda *a: None) if args.quiet else print
    say(f"{ref.tag or ref.digest}: Pulling from {ref.repository}")
    store = Store.open()
    before = {r.id for r in store.images()}
    progress = make_progress("quiet" if args.quiet else args.progress, sys.stderr)
    try:
        if args.platform == "all":
            result = pull_all(store, ref, options=registry_options(args), progress=progress)
        else:
            result = pull(store, ref, platform=parse_platform(args.platform) if args.platform else None,
                          options=registry_options(args), progress=progress)
    finally:
        progress.close()
    say(f"Digest: {result.digest}")
    name = ref.familiar()
    if result.downloaded or result.image.id not in before:
        say(f"Status: Downloaded newer image for {name}")
    else:
        say(f"Status: Image is up to date for {name}")
    print(str(ref))
    return 0
