"""Benchmark: content checksum of a 20,000-file, ~156 MB build context, cold and warm.

    python3 bench/context.py [--files 20000] [--size-mb 156] [--dir DIR] [--runs 3]

Makes the context once (cached in DIR, default /tmp/pybuild-bench-context): 200 directories of
files of varied sizes, random content. Then, with a private $PYBUILD_ROOT, times in one run:

- peer:  `tar -cf - DIR | sha256sum` (reads every byte once, as any content hash must cold);
- cold:  `checksum` of the whole context with an empty stat cache (every file read and hashed);
- warm:  the same again, stat cache loaded from disk (no file content read), in-process time;
- warm, in a fresh process: interpreter start + import + checksum, the rebuild's real cost;
- edit:  one file changed, then the checksum (one file re-read);
- copy:  `copy_files` of the whole context into an empty layer dir, next to `cp -a` as its peer.

Targets (issue 6): the warm checksum well under 0.3 s; the whole cached rebuild under 0.5 s.
Prints each time and its ratio to the peer. The page cache is warm for everyone (the peer runs
first and last); "cold" means no stat cache, not an empty page cache.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_context(path: Path, files: int, size: int) -> None:
    """Write the benchmark context (skipped when a complete one is there)."""
    marker = path / ".complete"
    if marker.exists() and marker.read_text() == f"{files} {size}":
        return
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)
    rng = random.Random(42)
    mean = size // files
    pool = rng.randbytes(4 * mean * 4)
    for i in range(files):
        d = path / f"pkg{i % 200:03d}" / f"sub{(i // 200) % 5}"
        d.mkdir(parents=True, exist_ok=True)
        n = int(rng.expovariate(1 / mean)) if i % 10 else mean
        n = min(n, 4 * mean * 3)
        off = rng.randrange(0, len(pool) - n) if n < len(pool) else 0
        (d / f"file{i}.dat").write_bytes(pool[off:off + n] + i.to_bytes(4, "little"))
    (path / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx\n")
    marker.write_text(f"{files} {size}")
    past = time.time() - 60  # settled files: the stat cache may keep them
    for dirpath, _, names in os.walk(path):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past))


IGNORE = ".git\nnode_modules\n*.log\n**/*.tmp\n!keep.log\nbuild/\ndocs/*.md\npkg1*/sub3/*.bak\n**/cache\n"


def _peer(ctx: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(f"tar -cf - -C {ctx} . | sha256sum >/dev/null", shell=True, check=True)
    return time.perf_counter() - t0


def _copy_pair(ctx: Path, scratch: Path) -> tuple[float, float]:
    """(copy_files, cp -a) wall times for the whole context into fresh directories."""
    from builder.build.files.copy import copy_files

    times = []
    for tool in ("pybuild", "cp"):
        out = scratch / tool
        subprocess.run(["rm", "-rf", str(out)], check=True)
        out.mkdir(parents=True)
        t0 = time.perf_counter()
        if tool == "pybuild":
            copy_files(out, [""], "/ctx", src=ctx)
        else:
            subprocess.run(["cp", "-a", f"{ctx}/.", str(out / "ctx")], check=True)
        times.append(time.perf_counter() - t0)
    subprocess.run(["rm", "-rf", str(scratch)], check=True)
    return times[0], times[1]


def _checksum_in_process(ctx: Path, cpu: list[float] | None = None) -> tuple[float, str]:
    from builder.build.context import open_context

    t0, c0 = time.perf_counter(), time.process_time()
    context = open_context(str(ctx))
    digest = context.checksum(context.resolve_sources(["."]))
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0, digest


_CHILD = """
import sys, time
t0 = time.perf_counter()
from builder.build.context import open_context
c = open_context(sys.argv[1])
print(c.checksum(c.resolve_sources(["."])), time.perf_counter() - t0)
"""


def _checksum_fresh_process(ctx: Path) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(ctx)], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    return time.perf_counter() - t0, float(out[1]), out[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--size-mb", type=int, default=156)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pybuild-bench-context")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    ctx = args.dir / "ctx"
    t0 = time.perf_counter()
    make_context(ctx, args.files, args.size_mb * 1_000_000)
    total = sum(f.stat().st_size for f in ctx.rglob("*") if f.is_file())
    print(f"context: {args.files} files, {total / 1e6:.0f} MB in {ctx} (made in {time.perf_counter() - t0:.1f} s)")

    with tempfile.TemporaryDirectory(prefix="pybuild-bench-store-") as store:
        os.environ["PYBUILD_ROOT"] = store
        peers = [_peer(ctx)]
        colds, warms, fresh, edits, warm_cpu, ignored_cpu = [], [], [], [], [], []
        digest = None
        for run in range(args.runs):
            subprocess.run(["rm", "-rf", os.path.join(store, "cache")], check=True)
            t, d = _checksum_in_process(ctx)
            colds.append(t)
            digest = digest or d
            assert d == digest, "checksum changed between runs"
            for _ in range(3):
                t, d = _checksum_in_process(ctx, warm_cpu)
                warms.append(t)
                assert d == digest
            (ctx / ".dockerignore").write_text(IGNORE)
            try:
                for _ in range(2):
                    _checksum_in_process(ctx, ignored_cpu)
            finally:
                (ctx / ".dockerignore").unlink()
            wall, inner, d = _checksum_fresh_process(ctx)
            fresh.append((wall, inner))
            assert d == digest
            victim = ctx / "pkg007" / "sub1" / "file1207.dat"
            original = victim.read_bytes()
            victim.write_bytes(original + b"edit")
            try:
                t, d = _checksum_in_process(ctx)
                edits.append(t)
                assert d != digest
            finally:
                victim.write_bytes(original)
                past = time.time() - 60
                os.utime(victim, (past, past))
        peers.append(_peer(ctx))
        copies = [_copy_pair(ctx, args.dir / "copy-scratch") for _ in range(max(1, args.runs - 1))]

    peer = min(peers)
    rows = [
        ("peer: tar -cf - DIR | sha256sum", peer),
        ("cold checksum (empty stat cache)", min(colds)),
        ("warm checksum (in process)", min(warms)),
        ("  its CPU time", min(warm_cpu)),
        ("  CPU time with a 9-pattern .dockerignore", min(ignored_cpu)),
        ("warm, fresh process (wall)", min(w for w, _ in fresh)),
        ("  of which checksum after start", min(i for _, i in fresh)),
        ("one file edited (in process)", min(edits)),
    ]
    for name, t in rows:
        print(f"{name:44s} {t:8.3f} s   {t / peer:6.3f}x peer")
    ours, cp = min(c[0] for c in copies), min(c[1] for c in copies)
    print(f"{'COPY of the whole context (copy_files)':44s} {ours:8.3f} s   {ours / cp:6.3f}x cp -a ({cp:.3f} s)")
    warm = min(warms)
    print(f"warm checksum target < 0.3 s: {'met' if warm < 0.3 else 'NOT met'} ({warm:.3f} s wall, "
          f"{min(warm_cpu):.3f} s CPU); peer / warm = {peer / warm:.1f}x; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
