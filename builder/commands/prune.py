"""`pybuild prune`: remove images no tag, cache entry or container refers to, unreferenced blobs,
snapshots and leftover temp files. It says what it will remove and asks first (`-f` does not ask,
`--dry-run` lists and removes nothing); a build-cache policy alone never removes an image. Build-cache policies come from builder/analyze/cache.py; the
build cache's entries are GC roots (builder/cache/policy.py)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from builder.commands._imagefmt import human_size
from builder.store import Store


def _analyze_cache():  # the build-cache policies are owned by the analysis module, when present
    if importlib.util.find_spec("builder.analyze.cache") is None:
        return None
    import builder.analyze.cache as mod

    return mod


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("-a", "--all", action="store_true",
                   help="with a build-cache policy, also remove dangling images (alone: the default anyway)")
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting while a build is writing")
    mod = _analyze_cache()
    if mod is not None:
        mod.add_prune_options(p)


def _policy(args: argparse.Namespace) -> list[str]:
    """The build-cache policy given, in words (empty: none)."""
    out = []
    if getattr(args, "keep_storage", None):
        out.append(f"--keep-storage {args.keep_storage}")
    if getattr(args, "keep_duration", None):
        out.append(f"--keep-duration {args.keep_duration}")
    out += [f"--filter {f}" for f in getattr(args, "filters", None) or []]
    return out


def _confirm(what: list[str]) -> bool:
    """Docker's question; the answer is read from stdin (a script can pipe `y`), no answer is no."""
    sys.stdout.write("WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in what)
                     + "\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if not sys.stdin or not sys.stdin.isatty():
        sys.stdout.write("\n")
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    mod = _analyze_cache()
    policy = _policy(args)
    images = not policy or args.all  # a build-cache policy alone never removes an image
    what = ([f"build cache entries selected by {' '.join(policy)}"] if policy else [])
    what += ["dangling images (no tag, container or build cache entry uses them)"] if images else []
    what += ["blobs, layers and snapshots nothing uses any more, and leftover temp files"]
    if not (args.force or args.dry_run) and not _confirm(what):
        sys.stderr.write("Nothing removed (pass -f/--force to skip the question, --dry-run to list).\n")
        return 0
    if mod is not None and policy:
        result = mod.prune_cache(store.root, keep_storage=getattr(args, "keep_storage", None),
                                 keep_duration=getattr(args, "keep_duration", None),
                                 filters=getattr(args, "filters", None), dry_run=args.dry_run)
        print(result.render(dry_run=args.dry_run))
    from builder.cache.policy import build_cache_roots  # the build cache's entries keep what they name
    report = store.prune(not args.no_wait, [build_cache_roots(store.root)], keep_images=not images,
                         dry_run=args.dry_run)
    verb = "Would delete" if args.dry_run else "Deleted"
    for image_id in report.images:
        print(f"{verb}: {image_id}")
    if args.dry_run:
        print(f"Would remove {len(report.images)} images, {report.blobs} blobs, {report.snapshots} snapshots, "
              f"{report.temp} temp files; would reclaim {human_size(report.bytes_freed)} (nothing was removed)")
    else:
        print(f"Removed {len(report.images)} images, {report.blobs} blobs, {report.snapshots} snapshots, "
              f"{report.temp} temp files; reclaimed {human_size(report.bytes_freed)}")
    return 0
