"""Benchmark: the runtime's two speed targets (issue 5), each against a peer in the same run.

0. For reference, `LinuxExecutor.run` of `true` in-process vs `runc run` of a bundle on the same rootfs.

    python3 bench/runtime.py [--runs 15] [--skip-peers]

With a private $PYBUILD_ROOT holding busybox:latest (from fixtures/baseimages.py):

1. A cache-missed `RUN true` step: `pybuild build --no-cache` of `FROM busybox / RUN true`; the
   step's own time (start of the step to its layer recorded) comes from the build record. Peer:
   `buildah bud --runtime runc` of the same Dockerfile, its step cost taken as the difference
   between that build and a build of `FROM busybox / LABEL x=y` (same commit, no container).
   Targets: <= 60 ms median, and >= 5x faster than buildah's step.
2. `pybuild run --rm IMAGE true`, wall time including interpreter start (the real console
   script, not a pyenv shim), default bridge network and --network none. Peer: `podman run --rm
   --runtime runc` of the same image (loaded from `pybuild save`). Target: < 150 ms median.

Medians over --runs runs, after one warm-up run each (bytecode written, snapshots unpacked).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

import baseimages  # noqa: E402

PODMAN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _pybuild_script() -> list[str]:
    """The installed console script run by the real interpreter (pyenv shims add ~100 ms of bash)."""
    script = Path(sysconfig.get_path("scripts")) / "pybuild"
    return [sys.executable, str(script)] if script.exists() else [sys.executable, "-m", "builder"]


CPU: list[float] = []  # user+sys seconds of each timed command's whole process tree


def _time(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _last_run_step(store: Path) -> float:
    newest = max((store / "builds").glob("*.json"), key=lambda p: p.stat().st_mtime)
    steps = json.loads(newest.read_text())["steps"]
    run = [s for s in steps if s["kind"] == "RUN"]
    assert run and run[0]["cache"] == "miss", steps
    return run[0]["duration"]


def bench_executor(work: Path, runs: int, peers: bool, tar: Path) -> None:
    """LinuxExecutor.run of `true` in this process (no interpreter start) vs `runc run` of a bundle."""
    sys.path.insert(0, str(ROOT))
    from runtime.executor import LinuxExecutor
    from runtime.spec import ProcessSpec, RootfsSpec

    rootfs = work / "rootfs"
    rootfs.mkdir()
    subprocess.run(["tar", "-C", str(rootfs), "-xf", str(tar)], check=True)
    executor = LinuxExecutor()
    times = []
    for i in range(runs + 1):
        upper, wdir = work / f"exec-u{i}", work / f"exec-w{i}"
        upper.mkdir()
        wdir.mkdir()
        t0 = time.perf_counter()
        status = executor.run(ProcessSpec(("true",)), RootfsSpec((rootfs,), upper, wdir))
        times.append(time.perf_counter() - t0)
        assert status.code == 0
    times = times[1:]
    print(f"LinuxExecutor.run(true), in process: median {_median_ms(times):.1f} ms (min {min(times) * 1000:.1f})")
    if not peers or shutil.which("runc") is None:
        print("  runc: not measured")
        return
    bundle = work / "bundle"
    bundle.mkdir()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"], spec["process"]["terminal"] = ["true"], False
    spec["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(spec))
    peer = [_time(["runc", "run", "-b", str(bundle), f"pybuild-bench-{os.getpid()}-{i}"], dict(os.environ))
            for i in range(runs + 1)][1:]
    print(f"  runc run (same rootfs, no overlay, no network setup): median {_median_ms(peer):.1f} ms; "
          f"ratio runc / pybuild: {_median_ms(peer) / _median_ms(times):.1f}x")


def bench_step(work: Path, env: dict[str, str], runs: int, peers: bool, archive: Path) -> None:
    ctx_run, ctx_label = work / "ctx-run", work / "ctx-label"
    for ctx, text in ((ctx_run, "FROM busybox:latest\nRUN true\n"), (ctx_label, "FROM busybox:latest\nLABEL x=y\n")):
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(text)
    pb = _pybuild_script()
    store = Path(env["PYBUILD_ROOT"])
    ours, ours_wall = [], []
    for i in range(runs + 1):
        wall = _time([*pb, "build", "--no-cache", "-q", "-t", "step:bench", str(ctx_run)], env)
        if i:
            ours.append(_last_run_step(store))
            ours_wall.append(wall)
    print(f"RUN true step (pybuild, from the build record): median {_median_ms(ours):.1f} ms "
          f"(min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f}); target <= 60 ms")
    print(f"  whole `pybuild build --no-cache` wall: median {_median_ms(ours_wall):.0f} ms")
    if not peers or shutil.which("buildah") is None:
        print("  buildah: not measured")
        return
    broot = Path(tempfile.mkdtemp(prefix="bb", dir="/tmp"))
    storage = ["--root", str(broot / "r"), "--runroot", str(broot / "rr")]
    benv = {**os.environ, "BUILDAH_ISOLATION": "oci"}
    try:
        subprocess.run(["buildah", *storage, "pull", f"docker-archive:{archive}"], env=benv, check=True,
                       capture_output=True)
        base = ["buildah", *storage, "bud", "--runtime", "runc", "--layers=false", "-q", "--network", "host"]
        with_run, with_label = [], []
        for i in range(runs + 1):
            a = _time([*base, "-t", "step-run", str(ctx_run)], benv)
            b = _time([*base, "-t", "step-label", str(ctx_label)], benv)
            if i:
                with_run.append(a)
                with_label.append(b)
        peer_step = max(_median_ms(with_run) - _median_ms(with_label), 0.001)
        print(f"  buildah bud: RUN-step build {_median_ms(with_run):.0f} ms, LABEL-only build "
              f"{_median_ms(with_label):.0f} ms -> step {peer_step:.0f} ms")
        print(f"  ratio buildah step / pybuild step: {peer_step / _median_ms(ours):.1f}x (target >= 5x)")
        print(f"  ratio whole builds (buildah bud / pybuild build): "
              f"{_median_ms(with_run) / _median_ms(ours_wall):.1f}x")
    finally:
        subprocess.run(["buildah", *storage, "rm", "-a"], capture_output=True)
        subprocess.run(["buildah", *storage, "rmi", "-af"], capture_output=True)
        subprocess.run(["umount", "-R", str(broot / "r" / "overlay")], capture_output=True)
        shutil.rmtree(broot, ignore_errors=True)


def bench_run(work: Path, env: dict[str, str], runs: int, peers: bool, archive: Path) -> None:
    pb = _pybuild_script()
    CPU.clear()
    floor = [_time([sys.executable, "-c", "pass"], env) for _ in range(runs + 1)][1:]
    print(f"interpreter start alone (`python3 -c pass`, this machine's site-packages): median "
          f"{_median_ms(floor):.0f} ms, CPU {_median_ms(CPU[1:]):.0f} ms")
    for network in ("bridge", "none"):
        CPU.clear()
        times = [_time([*pb, "run", "--rm", "--network", network, "busybox", "true"], env) for _ in range(runs + 1)][1:]
        print(f"`pybuild run --rm --network {network} busybox true`: median {_median_ms(times):.0f} ms "
              f"(min {min(times) * 1000:.0f}); target < 150 ms; CPU (user+sys, all processes) "
              f"median {_median_ms(CPU[1:]):.0f} ms")
        if network == "bridge":
            ours_bridge = times
    # This machine's site-packages run .pth hooks at every interpreter start (an editable-install
    # finder, a CA-bundle hook importing certifi); `python -S` with PYTHONPATH skips them.
    bare = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_path("purelib")])}
    CPU.clear()
    times = [_time([sys.executable, "-S", "-m", "builder", "run", "--rm", "busybox", "true"], bare)
             for _ in range(runs + 1)][1:]
    print(f"  the same (bridge) without .pth hooks (python -S): median {_median_ms(times):.0f} ms "
          f"(min {min(times) * 1000:.0f}), CPU {_median_ms(CPU[1:]):.0f} ms")
    if not peers or shutil.which("podman") is None:
        print("  podman: not measured")
        return
    proot = Path(tempfile.mkdtemp(prefix="pp", dir="/tmp"))
    storage = ["--root", str(proot / "r"), "--runroot", str(proot / "rr")]
    try:
        subprocess.run(["podman", *storage, "load", "-i", str(archive)], check=True, capture_output=True)
        CPU.clear()
        peer = [_time(["podman", *storage, "run", "--rm", *PODMAN_FLAGS, "busybox", "true"], dict(os.environ))
                for _ in range(runs + 1)][1:]
        print(f"  podman run --rm (bridge): median {_median_ms(peer):.0f} ms, CPU {_median_ms(CPU[1:]):.0f} ms; "
              f"ratio podman / pybuild: {_median_ms(peer) / _median_ms(ours_bridge):.1f}x")
    finally:
        subprocess.run(["podman", *storage, "rmi", "-af"], capture_output=True)
        subprocess.run(["umount", "-R", str(proot / "r" / "overlay")], capture_output=True)
        shutil.rmtree(proot, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--skip-peers", action="store_true", help="do not measure buildah and podman")
    ap.add_argument("--only", choices=["executor", "step", "run"], help="run one of the three benchmarks")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the runtime benchmark needs root")
    with tempfile.TemporaryDirectory(prefix="pybuild-bench-runtime-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYBUILD_ROOT"] = str(work / "store")
        tar = baseimages.busybox_rootfs_tar(work / "busybox.tar")
        pb = _pybuild_script()
        subprocess.run([*pb, "import", str(tar), "busybox:latest"], env=env, check=True, capture_output=True)
        archive = work / "busybox-image.tar"
        subprocess.run([*pb, "save", "-o", str(archive), "busybox:latest"], env=env, check=True)
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings are noisy when high)")
        for name, bench in (("executor", lambda: bench_executor(work, args.runs, not args.skip_peers, tar)),
                            ("step", lambda: bench_step(work, env, args.runs, not args.skip_peers, archive)),
                            ("run", lambda: bench_run(work, env, args.runs, not args.skip_peers, archive))):
            if args.only in (None, name):
                bench()


if __name__ == "__main__":
    main()
