"""`pybuild build`: the flags of `docker build` / `docker buildx build`, parsed into
`builder.build.BuildOptions` and handed to `builder.build.build()`.

Every option is checked here, before the first step. The cached no-op path stays lean: progress is
plain text (the live view and its thread only on a TTY), and no HTTP client is imported. A command line seen
before whose build was a no-op is replayed (`replay`) before argparse is even imported: see `cache/memo.py`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    import argparse
    from typing import Mapping, Sequence

    from builder.build.options import BuildOptions, BuildResult
    from builder.util.progress import Progress


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild build [OPTIONS] PATH | URL | -"
    p.add_argument("context", metavar="PATH", help="build context directory, or - to read a Dockerfile (or a context tarball) from stdin")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name and optionally tag the image (repeatable)")
    p.add_argument("-f", "--file", metavar="FILE", help="name of the Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]", help="set a build-time variable; KEY alone takes it from the environment")
    p.add_argument("--target", metavar="STAGE", help="build this stage and only what it needs")
    p.add_argument("--no-cache", action="store_true", help="do not use the cache")
    p.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE", help="do not use the cache for this stage")
    p.add_argument("--pull", action="store_true", help="always pull base images")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="set metadata on the image")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT][,...]",
                   help="target platform (default: this machine's); a comma-separated list builds each into one "
                        "multi-platform image (an OCI index)")
    p.add_argument("--progress", choices=["auto", "plain", "tty", "json", "quiet"], default="auto", help="progress output (default: auto)")
    p.add_argument("-o", "--output", action="append", default=[], metavar="type=TYPE[,dest=...]", help="output: image, oci, docker, local, tar, registry")
    p.add_argument("--push", action="store_true", help="push the image to its registry (--output type=registry)")
    p.add_argument("--load", action="store_true", help="store the image locally (the default with -t)")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID[,src=FILE|env=VAR]", help="expose a secret to RUN --mount=type=secret")
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET|KEY[,KEY]]",
                   help="expose an SSH agent (default: $SSH_AUTH_SOCK) or keys to RUN --mount=type=ssh")
    p.add_argument("--cache-from", action="append", default=[], metavar="type=registry,ref=REF", help="import build cache from a registry or directory")
    p.add_argument("--cache-to", action="append", default=[], metavar="type=registry,ref=REF", help="export build cache to a registry or directory")
    p.add_argument("--iidfile", metavar="FILE", help="write the image id to FILE")
    p.add_argument("--metadata-file", metavar="FILE", help="write build result metadata to FILE")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="allow an extra privilege: security.insecure (RUN --security=insecure), network.host")
    p.add_argument("--network", choices=["default", "none", "host"], default="default", help="network mode for RUN steps")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP", help="add a line to RUN steps' /etc/hosts (repeatable)")
    p.add_argument("--shm-size", metavar="SIZE", help="size of RUN steps' /dev/shm (e.g. 128m; default 64m)")
    p.add_argument("--jobs", type=int, metavar="N", help="stages built at once (default: number of cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--check", action="store_true",
                   help="run the build checks and build nothing (as docker build --check; pybuild check --format json for tools)")


def replay_key(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The key of a command line (as given, with the environment before it was read) for `replay`
    (None: no working directory to key on)."""
    from builder.cache.memo import replay_key as key

    try:
        cwd = os.getcwd()
    except OSError:
        return None
    return key(argv, cwd, environ, os.geteuid())


def replay(key: str) -> int | None:
    """Finish the build of command line `key` when it is the no-op it was the last time (same
    Dockerfile, context entries, store index and code): show what that build showed, write its
    record, print its id. None: parse the command line and build."""
    import time

    from builder.cache.memo import replay_lookup
    from builder.util.paths import root_dir

    started = time.time()
    root = root_dir()
    hit = replay_lookup(root, key)
    if hit is None:
        return None
    from builder.build.records import write_replayed

    if hit["mode"] == "quiet":  # nothing shown but the id
        write_replayed(root, hit["record"], started)
        print(hit["image_id"])
        return 0
    from builder.util.progress import make_progress, play

    progress = make_progress(hit["mode"])
    try:
        play(hit["events"], progress)
        write_replayed(root, hit["record"], started)
    finally:
        progress.close()
    _show_checks(tuple(hit["checks"]), hit["mode"])
    return 0


def options_from(args: argparse.Namespace) -> BuildOptions:
    """The typed build options of the parsed command line (every value checked, none used yet)."""
    from builder.build.options import (BuildOptions, parse_add_hosts, parse_allow, parse_build_args, parse_labels,
                                       parse_outputs, parse_secrets, parse_shm_size)

    cache_from: tuple[object, ...] = ()
    cache_to: tuple[object, ...] = ()
    if args.cache_from or args.cache_to:
        from builder.cache.export import parse_cache_spec

        cache_from = tuple(parse_cache_spec(v, export=False) for v in args.cache_from)
        cache_to = tuple(parse_cache_spec(v, export=True) for v in args.cache_to)
    return BuildOptions(
        context=args.context, dockerfile=args.file, tags=tuple(args.tag),
        build_args=parse_build_args(args.build_arg), target=args.target, platform=args.platform,
        labels=parse_labels(args.label), no_cache=args.no_cache, no_cache_filter=frozenset(args.no_cache_filter),
        pull=args.pull, network=args.network, jobs=args.jobs or 0, secrets=parse_secrets(args.secret),
        ssh=tuple(args.ssh), outputs=parse_outputs(args.output, args.tag, args.push), cache_from=cache_from,
        cache_to=cache_to, allow=parse_allow(args.allow), extra_hosts=parse_add_hosts(args.add_host),
        shm_size=parse_shm_size(args.shm_size))


def run(args: argparse.Namespace) -> int:
    from builder.build import build
    from builder.util.progress import make_progress

    if args.quiet:
        args.progress = "quiet"
    options = options_from(args)
    if args.check:
        from builder.commands.check import report

        return report(options)
    progress = make_progress(args.progress)
    try:
        try:
            result = build(options, progress)
            _report(args, result, progress)
        finally:
            progress.close()
    except KeyboardInterrupt:  # Ctrl-C: the running steps showed CANCELED; buildx's last line and exit code
        sys.stderr.write("ERROR: failed to solve: Canceled: context canceled\n")
        return 130
    _show_checks(result.checks, args.progress)
    key = getattr(args, "_replay_key", None)
    if key and result.replay is not None and not args.iidfile and not args.metadata_file:
        from builder.cache.memo import replay_save
        from builder.util.paths import default_root

        data = result.replay
        replay_save(default_root(), key, data["memo_key"], data["memo"], data["tags"], data["stats"], data["contents"],
                    {**data["record"], "mode": args.progress})
    return 0


def _show_checks(checks: tuple[str, ...], mode: str) -> None:
    """The build checks' warnings, after the build's output, as buildx prints them."""
    if checks and mode != "quiet":
        n = len(checks)
        sys.stderr.write(f"\n {n} warning{'s' if n != 1 else ''} found (use pybuild check for details):\n"
                         + "".join(f" - {line}\n" for line in checks))


def _report(args: argparse.Namespace, result: BuildResult, progress: Progress) -> None:
    import json

    from builder.util.atomic import write_atomic

    if args.iidfile:
        write_atomic(args.iidfile, result.image_id.encode(), durable=False, what="the image id (--iidfile)")
    if args.metadata_file:
        meta = {"containerimage.config.digest": result.image_id, "containerimage.digest": result.manifest_digest,
                "image.name": ",".join(args.tag), "buildx.build.ref": result.build_id}
        write_atomic(args.metadata_file, (json.dumps(meta, indent=2) + "\n").encode(), durable=False,
                     what="the build metadata (--metadata-file)")
    if args.quiet:
        print(result.image_id)
