"""Benchmark: `pybuild import` of the debootstrapped Debian rootfs tar (~200 MB) against
`docker import` of the same tar (target: no slower), one after the other in the same run.

    python3 bench/debian_import.py [--runs 3] [--profile]

The tar is fixtures/baseimages.py's cached debian:bookworm. Each run imports into a fresh
pybuild store, and into a private dockerd (its own socket and data root, started here) as a new
tag; the best of the runs is compared. `--profile` prints pybuild import's cProfile top 25.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conformance.peers import DOCKER, Dockerd  # noqa: E402  (a private dockerd, started and stopped here)

sys.path.insert(0, str(ROOT / "fixtures"))
import baseimages  # noqa: E402


def _time(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **env})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    tar = baseimages.cached_debian_tar()
    size = tar.stat().st_size
    env = {"PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        work = Path(tmp)
        empty = work / "empty.tar"
        subprocess.run(["tar", "-cf", str(empty), "-T", "/dev/null"], check=True)
        dockerd = Dockerd(work / "dockerd", empty)
        try:
            ours, theirs = [], []
            for i in range(args.runs):
                store = work / f"store{i}"
                ours.append(_time([sys.executable, "-m", "builder", "import", str(tar), "debian:bench"],
                                  {**env, "PYBUILD_ROOT": str(store)}))
                theirs.append(_time([DOCKER, "import", str(tar), f"debian:bench{i}"], dockerd.env))
                shutil.rmtree(store)
            if args.profile:
                store = work / "store-prof"
                prof = work / "import.prof"
                subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "builder", "import", str(tar),
                                "debian:bench"], check=True, stdout=subprocess.DEVNULL,
                               env={**os.environ, **env, "PYBUILD_ROOT": str(store)})
                import pstats
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(25)
        finally:
            dockerd.close()
    a, b = min(ours), min(theirs)
    print(f"import of a {size / 1e6:.0f} MB Debian rootfs tar, best of {args.runs}:")
    print(f"  pybuild import  {a:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"  docker import   {b:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in theirs)})")
    print(f"  ratio pybuild/docker: {a / b:.2f}  (target <= 1.00)")


if __name__ == "__main__":
    main()
