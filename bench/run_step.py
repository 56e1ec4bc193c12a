"""Benchmark: a RUN step's cost with its own network namespace (issue 12, item 2), quiet and under a
background CPU load, against buildah (runc) measured in the same run under the same load.

    python3 bench/run_step.py [--runs 8] [--skip-peers]

1. In process: `LinuxExecutor.run(true)` with the RUN default network (own namespace on the
   bridge) and with `none` (no veth): the difference is what isolating a RUN's network costs.
2. `pybuild build --no-cache` of FROM busybox + 4 RUN steps: each RUN step's own time from the
   build record (target: median <= 60 ms quiet) and the whole build's wall time.
3. The same while 2 x cores busy-looping processes run (a 1-minute load of ~4 on this machine
   and more), so a wait that only shows under load (a poll interval, a lock, the network setup)
   shows here. Peer: `buildah bud --runtime runc --layers=false` of the same Dockerfile, its
   per-step time taken against a LABEL-only build, quiet and loaded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "fixtures")]

import baseimages  # noqa: E402

DOCKERFILE = "FROM busybox:latest\n" + "".join(f"RUN echo {i} > /{i}\n" for i in range(4))


def _pybuild() -> list[str]:
    return [sys.executable, "-m", "builder"]  # this checkout (PYTHONPATH below), not an installed one


def _busy() -> None:
    while True:
        pass


class Load:
    """2 x cores busy loops for the duration of a `with` block."""

    def __enter__(self) -> "Load":
        self.procs = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(2 * (os.cpu_count() or 1))]
        for p in self.procs:
            p.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:6.0f} ms"


def bench_executor(work: Path, lower: Path, runs: int) -> dict[str, float]:
    from runtime.executor import LinuxExecutor
    from runtime.spec import NetworkMode, ProcessSpec, RootfsSpec

    ex = LinuxExecutor()
    times: dict[str, list[float]] = {"default": [], "none": []}
    for i in range(runs + 1):
        for mode in times:
            upper, wdir = work / f"u{i}{mode}{time.monotonic_ns()}", work / f"w{i}{mode}{time.monotonic_ns()}"
            upper.mkdir()
            wdir.mkdir()
            t = time.perf_counter()
            st = ex.run(ProcessSpec(("true",)), RootfsSpec((lower,), upper, wdir), network=NetworkMode(mode),
                        stdout=lambda _: None, stderr=lambda _: None)
            assert st.code == 0
            if i:
                times[mode].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_build(ctx: Path, env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    store = Path(env["PYBUILD_ROOT"])
    steps, walls = [], []
    for i in range(runs + 1):
        t = time.perf_counter()
        subprocess.run([*_pybuild(), "build", "--no-cache", "-q", str(ctx)], env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t
        newest = max((store / "builds").glob("*.json"), key=lambda p: p.stat().st_mtime)
        if i:
            walls.append(wall)
            steps += [s["duration"] for s in json.loads(newest.read_text())["steps"] if s["kind"] == "RUN"]
    return steps, walls


def bench_buildah(work: Path, archive: Path, ctx: Path, runs: int) -> tuple[float, float]:
    """(per-step seconds, whole build seconds) of buildah bud, medians."""
    label = work / "ctx-label"
    label.mkdir(exist_ok=True)
    (label / "Dockerfile").write_text("FROM busybox:latest\nLABEL x=y\n")
    broot = Path(tempfile.mkdtemp(prefix="bb", dir="/tmp"))
    storage = ["--root", str(broot / "r"), "--runroot", str(broot / "rr")]
    env = {**os.environ, "BUILDAH_ISOLATION": "oci"}
    try:
        subprocess.run(["buildah", *storage, "pull", f"docker-archive:{archive}"], env=env, check=True,
                       capture_output=True)
        base = ["buildah", *storage, "bud", "--runtime", "runc", "--layers=false", "-q"]
        runs_, labels = [], []
        for i in range(runs + 1):
            t = time.perf_counter()
            subprocess.run([*base, str(ctx)], env=env, check=True, capture_output=True)
            a = time.perf_counter() - t
            t = time.perf_counter()
            subprocess.run([*base, str(label)], env=env, check=True, capture_output=True)
            if i:
                runs_.append(a)
                labels.append(time.perf_counter() - t)
        whole = statistics.median(runs_)
        return max(whole - statistics.median(labels), 0.0) / 4, whole
    finally:
        subprocess.run(["buildah", *storage, "rm", "-a"], capture_output=True)
        subprocess.run(["buildah", *storage, "rmi", "-af"], capture_output=True)
        subprocess.run(["umount", "-R", str(broot / "r" / "overlay")], capture_output=True)
        shutil.rmtree(broot, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--skip-peers", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYBUILD_ROOT": str(work / "store"), "PYTHONPATH": str(ROOT)}
        tar = baseimages.busybox_rootfs_tar(work / "busybox.tar")
        subprocess.run([*_pybuild(), "import", str(tar), "busybox:latest"], env=env, check=True, capture_output=True)
        archive = work / "busybox-archive.tar"
        subprocess.run([*_pybuild(), "save", "-o", str(archive), "busybox:latest"], env=env, check=True)
        lower = work / "lower"
        lower.mkdir()
        with tarfile.open(tar) as t:
            t.extractall(lower, filter="fully_trusted")
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        peers = not args.skip_peers and shutil.which("buildah") is not None
        for label, load in (("quiet", None), ("loaded", Load)):
            with load() if load else _Nothing():
                print(f"--- {label}: 1-minute load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
                ex = bench_executor(work, lower, args.runs * 2)
                print(f"LinuxExecutor.run(true): own network namespace {ex['default'] * 1000:.0f} ms, "
                      f"network none {ex['none'] * 1000:.0f} ms -> network isolation "
                      f"{(ex['default'] - ex['none']) * 1000:+.0f} ms")
                steps, walls = bench_build(ctx, env, args.runs)
                print(f"pybuild RUN step (build record): median {_ms(steps)} (max {max(steps) * 1000:.0f} ms); "
                      f"4-step build wall {_ms(walls)}; target <= 60 ms per step quiet")
                if peers:
                    step, whole = bench_buildah(work, archive, ctx, args.runs)
                    print(f"buildah bud (runc): step {step * 1000:.0f} ms, build {whole * 1000:.0f} ms; "
                          f"ratio buildah / pybuild: step {step / statistics.median(steps):.1f}x, "
                          f"build {whole / statistics.median(walls):.1f}x")


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
