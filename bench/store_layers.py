"""Benchmark: commit a ~300 MB directory as a layer (zstd, gzip) and unpack it, against the shell.

    python3 bench/store_layers.py [--size-mb 300] [--runs 3] [--rss-gb 1] [--dir DIR] [--steps commit,unpack]

Makes a mixed directory once (cached under DIR, default /tmp/pybuild-bench-layers): thousands of
small text-like files, a few hundred medium files of mixed content, some large binaries
(random, and compressible). Then, in one run, interleaved, best of --runs:

- commit zstd:  Store.commit_dir(compression=zstd, level 3)  vs  `tar -cf - DIR | zstd -3 -T0 | sha256sum`
- commit gzip:  Store.commit_dir(compression=gzip, level 6)  vs  `tar -cf - DIR | pigz -6 | sha256sum`
- unpack:       Store.unpack_layer(zstd layer -> new dir)    vs  `zstd -dc BLOB | tar -x -C NEW`

Ours runs in a child process each time (timed inside, without interpreter start-up) so that its
peak RSS is measured per run; with --rss-gb, the same on a directory of that size, for memory.
Before every timed run, of either side: `sync`, and for the unpack step (as root) the page,
dentry and inode caches are dropped too, so each side reads the blob from disk and neither
pays for the other's writeback or finds the other's inodes cached. As root, both sides run under
SCHED_FIFO (`chrt -f 10`, --no-rt to turn off), so that other processes on a shared machine do not
preempt either side (the kernel still keeps 5% of each second for them). Prints best-of and
median wall times and CPU times (user+sys of every process involved: steadier on a busy machine).
Targets (issue 4): each ratio <= 1.25; peak RSS < 150 MB on 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("def class return import self value layer image store tar digest compress build step "
         "cache index manifest config static const void int char struct include define if else for "
         "while public private function var let true false null None error warning").split()


def _text(rng: random.Random, n: int) -> bytes:
    out = []
    size = 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + f" {rng.randint(0, 99999)}\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def make_tree(path: Path, size_mb: int) -> None:
    """A mixed directory of about size_mb MB (kept between runs)."""
    marker = path / ".complete"
    if marker.exists() and marker.read_text() == str(size_mb):
        return
    if path.exists():
        shutil.rmtree(path)
    rng = random.Random(7)
    budget = size_mb << 20
    text_pool = _text(rng, 8 << 20)
    rand_pool = rng.randbytes(16 << 20)
    scale = size_mb / 300
    # ~25%: 6000 small text files (0.5-12 KB); ~35%: 300 medium mixed files; ~40%: 8 large files
    small = int(6000 * scale)
    for i in range(small):
        d = path / "src" / f"pkg{i % 60:02d}" / f"mod{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(512, 24 << 10)
        off = rng.randrange(0, len(text_pool) - n)
        (d / f"file{i}.py").write_bytes(text_pool[off:off + n])
    left = budget - sum(f.stat().st_size for f in (path / "src").rglob("*") if f.is_file())
    medium_total = int(left * 0.45)
    i = 0
    while medium_total > 0:
        d = path / "lib" / f"d{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        n = min(rng.randint(100 << 10, 2 << 20), medium_total)
        pool = text_pool if i % 3 == 0 else rand_pool
        off = rng.randrange(0, len(pool) - n)
        data = pool[off:off + n] if i % 3 != 2 else (b"\0" * (n // 2) + rand_pool[off:off + n - n // 2])
        (d / f"lib{i}.so").write_bytes(data)
        medium_total -= n
        i += 1
    left = budget - sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    (path / "big").mkdir(exist_ok=True)
    for k in range(8):
        n = left // 8
        with open(path / "big" / f"blob{k}.bin", "wb") as f:
            while n > 0:
                chunk = (rand_pool if k % 2 else text_pool * 2)[: min(n, len(rand_pool))]
                f.write(chunk)
                n -= len(chunk)
    marker.write_text(str(size_mb))


DROP_CACHES = Path("/proc/sys/vm/drop_caches")
PRIORITY: list[str] = []  # a command prefix both sides run under (set by main: chrt as root)


def _settle(cold: bool = False) -> None:
    """Write back dirty pages before a timed run, so that no side pays for the previous one's writes;
    with `cold` (root only), also drop the page, dentry and inode caches."""
    os.sync()
    if cold and os.geteuid() == 0:
        DROP_CACHES.write_text("3\n")


def _shell(cmd: str, cold: bool = False) -> tuple[float, float]:
    """Wall time and CPU time (user + sys of every process in the pipeline)."""
    _settle(cold)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([*PRIORITY, "bash", "-c", f"set -o pipefail; {cmd}"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _child(args: list[str], cold: bool = False) -> tuple[dict, int, float]:
    """Run this script's --child mode; return its JSON result, peak RSS (bytes) and CPU seconds."""
    _settle(cold)
    proc = subprocess.Popen([*PRIORITY, sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args} failed with status {status}")
    return json.loads(out), usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def child(argv: list[str]) -> None:
    """Time one operation; wall and CPU exclude interpreter start-up, as the peer's has none to speak of."""
    from builder.store import Store

    mode, store_root = argv[0], Path(argv[1])
    store = Store.open(store_root)
    if mode == "commit":
        codec, level, src = argv[2], int(argv[3]), argv[4]
        t0, c0 = time.perf_counter(), _cpu()
        rec = store.commit_dir(src, compression=codec, level=level)
        elapsed = time.perf_counter() - t0
        print(json.dumps({"elapsed": elapsed, "cpu": _cpu() - c0, "digest": rec.digest, "diff_id": rec.diff_id, "size": rec.size,
                          "media_type": rec.media_type, "tar_size": rec.uncompressed_size}))
    elif mode == "unpack":
        diff_id, dest = argv[2], Path(argv[3])
        layer = store.layer(diff_id)
        dest.mkdir()
        t0, c0 = time.perf_counter(), _cpu()
        store.unpack_layer(layer, dest)
        print(json.dumps({"elapsed": time.perf_counter() - t0, "cpu": _cpu() - c0}))


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rss-gb", type=float, default=1.0, help="also measure peak RSS on a tree this big (0: skip)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/pybuild-bench-layers"))
    ap.add_argument("--steps", default="commit,unpack", help="comma-separated: commit, unpack")
    ap.add_argument("--no-rt", action="store_true", help="do not run both sides under SCHED_FIFO (chrt -f 10)")
    args = ap.parse_args()
    if not args.no_rt and os.geteuid() == 0 and shutil.which("chrt"):
        PRIORITY[:] = ["chrt", "-f", "10"]
    steps = set(args.steps.split(","))
    for tool in ("tar", "zstd", "pigz", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/install-test-deps)")
    work = args.dir
    tree = work / f"tree-{args.size_mb}"
    make_tree(tree, args.size_mb)
    store_root = _fresh(work / "store")
    out = work / "out"
    print(f"tree: {tree} ({sum(f.stat().st_size for f in tree.rglob('*') if f.is_file()) / 1e6:.0f} MB, "
          f"{sum(1 for _ in tree.rglob('*'))} entries), {os.cpu_count()} CPUs, best of {args.runs}")

    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    rss: dict[str, int] = {}

    def note(key: str, wall: float, cpu_s: float, peak: int = 0) -> None:
        walls.setdefault(key, []).append(wall)
        cpus.setdefault(key, []).append(cpu_s)
        rss[key] = max(rss.get(key, 0), peak)

    load_before = os.getloadavg()[0]
    _shell(f"tar -cf - -C {tree} . >/dev/null")  # warm the page cache for everyone
    zstd_rec = None
    for _ in range(args.runs if "commit" in steps else 0):
        note("peer zstd", *_shell(f"tar -cf - -C {tree} . | zstd -3 -T0 | sha256sum"))
        res, peak, _ = _child(["commit", str(store_root), "zstd", "3", str(tree)])
        note("commit zstd", res["elapsed"], res["cpu"], peak)
        zstd_rec = res
        note("peer gzip", *_shell(f"tar -cf - -C {tree} . | pigz -6 | sha256sum"))
        res, peak, _ = _child(["commit", str(store_root), "gzip", "6", str(tree)])
        note("commit gzip", res["elapsed"], res["cpu"], peak)
    if zstd_rec is None:  # the layer to unpack, committed untimed
        zstd_rec, _, _ = _child(["commit", str(store_root), "zstd", "3", str(tree)])
    blob = store_root / "blobs" / "sha256" / zstd_rec["digest"].split(":")[1]
    for i in range(args.runs if "unpack" in steps else 0):
        for side in (("peer", "ours") if i % 2 == 0 else ("ours", "peer")):  # alternate who goes first
            dest = _fresh(out)
            if side == "peer":
                dest.mkdir(parents=True)
                note("peer unpack", *_shell(f"zstd -dc {blob} | tar -x -C {dest}", cold=True))
            else:
                res, peak, _ = _child(["unpack", str(store_root), zstd_rec["diff_id"], str(dest)], cold=True)
                note("unpack", res["elapsed"], res["cpu"], peak)
    _fresh(out)

    load = os.getloadavg()[0]
    busy = max(load, load_before) > (os.cpu_count() or 1)
    print(f"load average {load_before:.1f} before, {load:.1f} after, on {os.cpu_count()} CPUs"
          + ("  (busy machine: wall ratios are noisy, see the CPU columns)" if busy else ""))
    print(f"unpack: caches {'dropped' if os.geteuid() == 0 else 'NOT dropped (not root)'} before every run of either side; "
          f"both sides {'under SCHED_FIFO (chrt -f 10)' if PRIORITY else 'at normal priority'}")
    print(f"{'':12} {'best: ours':>10} {'peer':>7} {'ratio':>5}  {'median: ours':>12} {'peer':>7} {'ratio':>5}  "
          f"{'cpu best: ours':>14} {'peer':>6} {'ratio':>5}  {'cpu median':>10}  peak RSS")
    for ours, peer in (("commit zstd", "peer zstd"), ("commit gzip", "peer gzip"), ("unpack", "peer unpack")):
        if ours not in walls:
            continue
        best, med = min(walls[ours]) / min(walls[peer]), statistics.median(walls[ours]) / statistics.median(walls[peer])
        cpu_best = min(cpus[ours]) / min(cpus[peer])
        cpu_med = statistics.median(cpus[ours]) / statistics.median(cpus[peer])
        print(f"{ours:12} {min(walls[ours]):9.2f}s {min(walls[peer]):6.2f}s {best:5.2f}  "
              f"{statistics.median(walls[ours]):11.2f}s {statistics.median(walls[peer]):6.2f}s {med:5.2f}  "
              f"{min(cpus[ours]):13.2f}s {min(cpus[peer]):5.2f}s {cpu_best:5.2f}  {cpu_med:10.2f}  "
              f"{rss[ours] / 1e6:5.0f} MB  {'ok' if best <= 1.25 else 'SLOW'}")

    if args.rss_gb > 0:
        size = int(args.rss_gb * 1024)
        big = work / f"tree-{size}"
        make_tree(big, size)
        big_store = _fresh(work / "store-big")
        res, peak_commit, _ = _child(["commit", str(big_store), "zstd", "3", str(big)])
        gz = ""
        if "commit" in steps:
            _, peak_gz, _ = _child(["commit", str(big_store), "gzip", "6", str(big)])
            gz = f"commit gzip {peak_gz / 1e6:.0f} MB, "
        dest = _fresh(out)
        _, peak_unpack, _ = _child(["unpack", str(big_store), res["diff_id"], str(dest)])
        _fresh(out)
        shutil.rmtree(big_store)
        print(f"{res['tar_size'] / 1e9:.2f} GB layer: peak RSS commit zstd {peak_commit / 1e6:.0f} MB, "
              f"{gz}unpack {peak_unpack / 1e6:.0f} MB (target < 150 MB)")
    shutil.rmtree(store_root, ignore_errors=True)


if __name__ == "__main__":
    main()
