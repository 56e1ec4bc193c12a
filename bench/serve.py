"""`docker build` through `pybuild serve` against `docker build` through dockerd's legacy builder.

    python3 bench/serve.py [--quick] [--runs N]

The same docker 20.10 client (/usr/bin/docker, DOCKER_BUILDKIT=0) talks to a private dockerd (its
own socket, data and exec roots, no iptables, no bridge) and to `pybuild serve` (its own store), both
started for this run and warm. Workloads, from bench/build.py: w1 a 4-step Dockerfile, w2 a 40-step
one, w3 a COPY of a 20,000-file, 156 MB context (`--quick`: 2,000 files, 16 MB). For each: the cold
build and the cached rebuild (median of --runs), speedup = dockerd / serve. Targets: cached no slower
than dockerd, cold at least 3x faster.

Then the API's own overhead on a cached w1 build: a raw `POST /build` of the context tar over the
socket against `builder.build.build()` called in this process on the same store (both warm), and
`docker build` through serve against the `pybuild build` command. Target: under 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "fixtures"), str(ROOT / "bench")]

import baseimages  # noqa: E402
from build import make_bigctx, make_steps  # noqa: E402  (bench/build.py's workloads)

DOCKER = "/usr/bin/docker"
PY = os.path.realpath(sys.executable)


def wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.decode()[-2000:]}")
    return took


def wait_for(argv: list[str], env: dict[str, str], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 90
    while subprocess.run(argv, env=env, capture_output=True).returncode:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


class Peer:
    def __init__(self, name: str, sock: Path, work: Path) -> None:
        self.name, self.sock = name, sock
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0",
                    "DOCKER_CONFIG": str(work / f"{name}-client")}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def build(self, ctx: Path, tag: str) -> float:
        return wall([DOCKER, "build", "-q", "-t", tag, str(ctx)], self.env)


def post_build(sock: Path, body: bytes, tag: str) -> float:
    """One raw `POST /build` (the body already made), read to the end; the wall time."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("localhost")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(sock))
    conn.request("POST", f"/v1.41/build?q=1&t={tag}", body=body, headers={"Content-Type": "application/x-tar"})
    data = conn.getresponse().read()
    took = time.perf_counter() - t0
    conn.close()
    if b'"aux"' not in data:
        raise SystemExit(f"POST /build failed: {data[-500:]!r}")
    return took


def tar_of(ctx: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(ctx.iterdir()):
            tar.add(p, p.name)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("dockerd") or not os.path.exists(DOCKER):
        raise SystemExit("needs root, dockerd and /usr/bin/docker (Debian's docker.io)")
    scale = 10 if opts.quick else 1
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    procs: list[subprocess.Popen] = []
    try:
        tar = baseimages.busybox_rootfs_tar(work / "busybox.tar")
        store = work / "store"
        env = {**os.environ, "PYBUILD_ROOT": str(store), "PYTHONPATH": str(ROOT)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "builder"), str(ROOT / "grammar"),
                        str(ROOT / "runtime")], env=env, check=True)
        subprocess.run([PY, "-m", "builder", "import", str(tar), "busybox:latest"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        serve = Peer("serve", work / "pybuild.sock", work)
        procs.append(subprocess.Popen([PY, "-m", "builder", "serve", "-H", f"unix://{serve.sock}"], env=env,
                                      stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT))
        wait_for([DOCKER, "version"], serve.env, procs[-1], "pybuild serve")
        dockerd = Peer("dockerd", work / "d" / "docker.sock", work)
        (work / "d").mkdir()
        procs.append(subprocess.Popen(
            ["dockerd", "--host", f"unix://{dockerd.sock}", "--data-root", str(work / "d" / "root"), "--exec-root",
             str(work / "d" / "exec"), "--pidfile", str(work / "d" / "pid"), "--iptables=false", "--bridge=none"],
            stdout=open(work / "d" / "log", "wb"), stderr=subprocess.STDOUT))
        wait_for([DOCKER, "version"], dockerd.env, procs[-1], "dockerd")
        subprocess.run([DOCKER, "import", str(tar), "busybox:latest"], env=dockerd.env, check=True,
                       stdout=subprocess.DEVNULL)
        warm = work / "warm"
        warm.mkdir()
        (warm / "Dockerfile").write_text("FROM busybox:latest\nRUN true\n")
        for peer in (serve, dockerd):
            peer.build(warm, "warm")  # base image unpacked once, untimed
        print(f"load average {os.getloadavg()[0]:.1f}; client {DOCKER} (DOCKER_BUILDKIT=0) for both; "
              f"speedup = dockerd / serve")
        print(f"{'workload':28s} {'serve':>9s} {'dockerd':>9s} {'speedup':>8s}  target")
        workloads = [("w1 4-step", make_steps(work, 4)), ("w2 40-step", make_steps(work, 40)),
                     (f"w3 {20_000 // scale}-file COPY", make_bigctx(work, 20_000 // scale, 156 // scale))]
        for name, ctx in workloads:
            cold = {p.name: p.build(ctx, f"b-{ctx.name}") for p in (serve, dockerd)}
            cached = {p.name: statistics.median(p.build(ctx, f"b-{ctx.name}") for _ in range(opts.runs))
                      for p in (serve, dockerd)}
            for kind, t, target in (("cold", cold, ">= 3x"), ("cached", cached, ">= 1x (no slower)")):
                print(f"{name + ' ' + kind:28s} {t['serve']:8.3f}s {t['dockerd']:8.3f}s "
                      f"{t['dockerd'] / t['serve']:7.2f}x  {target}")
            sys.stdout.flush()
        ctx = workloads[0][1]
        body = tar_of(ctx)
        api = statistics.median(post_build(serve.sock, body, "ovh") for _ in range(max(opts.runs, 9)))
        sys.path.insert(0, str(ROOT))
        os.environ["PYBUILD_ROOT"] = str(store)
        from builder.build import BuildOptions, build

        def in_process() -> float:
            t0 = time.perf_counter()
            build(BuildOptions(str(ctx), tags=("ovh",)))
            return time.perf_counter() - t0

        in_process()
        direct = statistics.median(in_process() for _ in range(max(opts.runs, 9)))
        cli_serve = statistics.median(serve.build(ctx, "ovh") for _ in range(opts.runs))
        cli_pybuild = statistics.median(wall([PY, "-m", "builder", "build", "-q", "-t", "ovh", str(ctx)], env)
                                        for _ in range(opts.runs))
        print(f"{'API overhead, cached w1':28s} POST /build {api * 1000:.1f} ms - build() in process "
              f"{direct * 1000:.1f} ms = {(api - direct) * 1000:.1f} ms  (target < 20 ms)")
        print(f"{'docker build vs pybuild build':28s} via serve {cli_serve * 1000:.1f} ms, pybuild build "
              f"{cli_pybuild * 1000:.1f} ms: {(cli_serve - cli_pybuild) * 1000:+.1f} ms (wall, clients' start included)")
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for sub in ("root", "exec"):
            subprocess.run(["umount", "-R", str(work / "d" / sub)], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
