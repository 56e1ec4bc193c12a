"""`pybuild prune`: remove images no tag, cache entry or container refers to, unreferenced blobs,
snapshots and leftover temp files. Build-cache policies come from builder/analyze/cache.py; the
build cache's entries are GC roots (builder/cache/policy.py)."""

from __future__ import annotations

import argparse
import importlib.util

from builder.commands._imagefmt import human_size
from builder.store import Store


def _analyze_cache():  # the build-cache policies are owned by the analysis module, when present
    if importlib.util.find_spec("builder.analyze.cache") is None:
        return None
    import builder.analyze.cache as mod

    return mod


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting while a build is writing")
    mod = _analyze_cache()
    if mod is not None:
        mod.add_prune_options(p)


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    mod = _analyze_cache()
    if mod is not None and any(getattr(args, k, None) for k in ("keep_storage", "keep_duration", "filters", "filter")):
        result = mod.prune_cache(store.root, keep_storage=getattr(args, "keep_storage", None),
                                 keep_duration=getattr(args, "keep_duration", None),
                                 filters=getattr(args, "filters", None) or getattr(args, "filter", None))
        print(result.render())
    from builder.cache.policy import build_cache_roots  # the build cache's entries keep what they name

    report = store.prune(wait=not args.no_wait, roots=[build_cache_roots(store.root)])
    for image_id in report.images:
        print(f"Deleted: {image_id}")
    print(f"Removed {len(report.images)} images, {report.blobs} blobs, {report.snapshots} snapshots, "
          f"{report.temp} temp files; reclaimed {human_size(report.bytes_freed)}")
    return 0
