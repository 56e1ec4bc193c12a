"""Benchmark: a cold CI build of a 40-step Dockerfile, with and without a registry cache (target >= 5x).

    sudo python3 bench/registry_cache.py [--runs 2] [--dir DIR]

"Machine A" builds the workload once with `--cache-to type=registry,ref=...,mode=max` into a
fresh docker-registry on 127.0.0.1. Then, each in a fresh store holding only the busybox base
image ("a new CI runner"):

    cold       pybuild build                                        (every step runs)
    cached     pybuild build --cache-from type=registry,ref=...     (every step a hit)

Both are timed end to end (the import downloads every cached layer from the registry). Prints the
medians and `cold / cached`. Needs root (RUN steps run in namespaces).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures"))

from tests.builder.registry_server import start_registry  # noqa: E402
from tests.builder.store_helpers import clone_store, import_busybox  # noqa: E402

STEPS = 40


def workload(ctx: Path) -> None:
    """A 40-step Dockerfile: RUN steps that compute and write files, COPY steps of source files."""
    ctx.mkdir(parents=True, exist_ok=True)
    lines = ["FROM busybox", "WORKDIR /app"]
    for i in range(STEPS - 1):
        if i % 4 == 3:
            (ctx / f"src{i}.txt").write_text(f"source file {i}\n" * 2000)
            lines.append(f"COPY src{i}.txt /app/src/")
        else:
            # a stand-in for compiling: CPU work in the shell, then an output file
            lines.append(f"RUN i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; "
                         f"dd if=/dev/urandom of=/app/out{i}.bin bs=64k count=8 2>/dev/null; echo step {i} $i")
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")


def build(root: Path, ctx: Path, *flags: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "builder", "build", "-t", "ci:1", "--progress", "plain", *flags, str(ctx)],
                          capture_output=True, text=True, env={**os.environ, "PYBUILD_ROOT": str(root)})
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr[-3000:]}")
    if "--cache-from" in flags and proc.stderr.count("CACHED") != STEPS:
        raise SystemExit(f"expected {STEPS} cache hits:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    from builder.cache.keys import BuildCache

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/pybuild-bench-registry-cache")
    args = ap.parse_args()
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    import baseimages

    template = base / "template"
    import_busybox(template, baseimages.busybox_rootfs_tar(base / "busybox.tar"))
    ctx = base / "ctx"
    workload(ctx)
    reg = start_registry(base / "registry")
    try:
        a = clone_store(template, base / "machine-a")
        ref = f"{reg.host}/ci/cache:main"
        first = build(a, ctx, "--cache-to", f"type=registry,ref={ref},mode=max")
        print(f"machine A: first build with --cache-to {first:.2f} s, {len(BuildCache(a).entries())} cache entries")
        cold, cached = [], []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(dir=base) as tmp:
                cold.append(build(clone_store(template, Path(tmp) / "cold"), ctx))
                cached.append(build(clone_store(template, Path(tmp) / "cached"), ctx, "--cache-from", f"type=registry,ref={ref}"))
    finally:
        reg.stop()
    c, h = statistics.median(cold), statistics.median(cached)
    print(f"cold build:                   {c:.2f} s  ({', '.join(f'{x:.2f}' for x in cold)})")
    print(f"--cache-from build (hits):    {h:.2f} s  ({', '.join(f'{x:.2f}' for x in cached)})")
    print(f"speed-up: {c / h:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
