"""Build benchmarks: pybuild against buildah and the legacy docker builder, same machine, one run.

    python3 bench/build.py [--quick] [--only NAME,...] [--runs N]

Workloads (issue 6): a 4-step Dockerfile; a 40-step one; a COPY of a 20,000-file, 156 MB context;
that context with one small file edited before the rebuild; 4 independent stages of about 2 s of
CPU each (`--jobs 2`); a RUN that writes 300 MB. For each: the cold build, the fully cached
rebuild (median of --runs), the pybuild/peer ratio, and pybuild's peak RSS. `--quick` shrinks the
big workloads tenfold (for a smoke run; the targets are defined on the full sizes).

When `dockerd` is installed, a private daemon is started for the run (its own socket, data and
exec roots, no iptables, no bridge) and stopped at the end; its legacy builder (DOCKER_BUILDKIT=0)
is the second peer. Its daemon is warm, as a docker user's is; its CPU is spent in the daemon, so
only its wall times are compared. `--no-docker` leaves it out.

Wall times include interpreter start: pybuild runs as `python -m builder` from the real
interpreter (not a pyenv shim), with bytecode caching on, as an installed pybuild would.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

import baseimages  # noqa: E402

PY = os.path.realpath(sys.executable)


CPU: dict[str, float] = {}  # last CPU seconds (user+sys) per tool: a load-independent figure


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int]:
    """Run argv; return (wall seconds, peak RSS in MB of that process tree's largest process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{err[-3000:]}")
    CPU["last"] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss // 1024


class Tool:
    def __init__(self, name: str, work: Path) -> None:
        self.name, self.work = name, work
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def build(self, ctx: Path, tag: str, *extra: str) -> tuple[float, int]:
        raise NotImplementedError


class Docker(Tool):
    """The legacy docker builder of a private dockerd started for this run (see `stop`)."""

    def __init__(self, work: Path, busybox_tar: Path) -> None:
        super().__init__("docker", work)
        self.dir = work / "pbd"
        self.dir.mkdir()
        self.sock = f"unix://{self.dir}/docker.sock"
        self.env["DOCKER_BUILDKIT"] = "0"
        self.env["DOCKER_CONFIG"] = str(self.dir / "client")  # no user config, no credential helpers
        self.log = open(self.dir / "dockerd.log", "wb")
        self.daemon = subprocess.Popen(
            ["dockerd", "--iptables=false", "--bridge=none", "-H", self.sock, "--data-root", str(self.dir / "data"),
             "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid")],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        try:
            deadline = time.monotonic() + 60
            while subprocess.run(["docker", "-H", self.sock, "version"], env=self.env, capture_output=True).returncode:
                if self.daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd did not start; see {self.dir / 'dockerd.log'}")
                time.sleep(0.2)
            subprocess.run(["docker", "-H", self.sock, "import", str(busybox_tar), "busybox:latest"], env=self.env,
                           check=True, stdout=subprocess.DEVNULL)
        except BaseException:
            self.stop()
            raise

    def build(self, ctx: Path, tag: str, *extra: str) -> tuple[float, int]:
        args = [a for i, a in enumerate(extra) if a != "--jobs" and (i == 0 or extra[i - 1] != "--jobs")]
        return timed(["docker", "-H", self.sock, "build", "-q", "-t", tag, *args, str(ctx)], self.env)

    def stop(self) -> None:
        """Stop the daemon (SIGTERM: it stops its containers and unmounts its layers)."""
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.log.close()
        subprocess.run(["umount", "-R", str(self.dir / "data")], stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", str(self.dir / "exec")], stderr=subprocess.DEVNULL)


class Pybuild(Tool):
    def __init__(self, work: Path, busybox_tar: Path) -> None:
        super().__init__("pybuild", work)
        self.env["PYBUILD_ROOT"] = str(work / "pybuild-store")
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "builder"), str(ROOT / "grammar"),
                        str(ROOT / "runtime")], env=self.env, check=True)
        subprocess.run([PY, "-m", "builder", "import", str(busybox_tar), "busybox:latest"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def build(self, ctx: Path, tag: str, *extra: str) -> tuple[float, int]:
        return timed([PY, "-m", "builder", "build", "-q", "-t", tag, *extra, str(ctx)], self.env)


class Buildah(Tool):
    def __init__(self, work: Path, busybox_tar: Path) -> None:
        super().__init__("buildah", work)
        self.base = ["buildah", "--root", str(work / "buildah"), "--runroot", str(work / "buildah-run"),
                     "--storage-driver", "overlay"]
        img = subprocess.run(self.base + ["from", "scratch"], env=self.env, check=True,
                             capture_output=True, text=True).stdout.strip()
        subprocess.run(self.base + ["add", img, str(busybox_tar), "/"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(self.base + ["commit", "-q", img, "busybox:latest"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def build(self, ctx: Path, tag: str, *extra: str) -> tuple[float, int]:
        return timed(self.base + ["bud", "--runtime", "runc", "--layers", "-q", "-t", tag, *extra, str(ctx)], self.env)


# --- workloads ------------------------------------------------------------------------------------

def steps_dockerfile(n: int) -> str:
    lines = ["FROM busybox:latest", "ENV APP=/app", "WORKDIR /app", "COPY a.txt ."]
    i = 0
    while len(lines) < n:
        lines.append(f"RUN echo step {i} > /app/s{i}.txt" if i % 2 == 0 else f"ENV V{i}={i}")
        i += 1
    return "\n".join(lines[:n]) + "\n"


def make_steps(base: Path, n: int) -> Path:
    ctx = base / f"steps{n}"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(steps_dockerfile(n))
    (ctx / "a.txt").write_text("a\n")
    return ctx


def make_bigctx(base: Path, files: int, total_mb: int) -> Path:
    ctx = base / f"ctx{files}"
    rng = random.Random(6)
    per = total_mb * 1024 * 1024 // files
    blob = os.urandom(per * 2)
    for i in range(files):
        d = ctx / "src" / f"d{i % 200:03d}"
        d.mkdir(parents=True, exist_ok=True)
        off = rng.randrange(per)
        (d / f"f{i:05d}.bin").write_bytes(blob[off:off + per])
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nCOPY src /src\nRUN ls /src | wc -l > /count\n")
    return ctx


def make_stages(base: Path, loops: int) -> Path:
    ctx = base / "stages"
    ctx.mkdir()
    body = ["FROM busybox:latest AS base", "RUN echo base > /base"]
    for s in range(4):
        body += [f"FROM busybox:latest AS s{s}",
                 f"RUN i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done; echo {s} > /s{s}"]
    body += ["FROM busybox:latest"] + [f"COPY --from=s{s} /s{s} /s{s}" for s in range(4)]
    (ctx / "Dockerfile").write_text("\n".join(body) + "\n")
    return ctx


def make_bigrun(base: Path, mb: int, name: str = "bigrun") -> Path:
    ctx = base / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(  # the name is in the RUN so that each workload has its own cache key
        f"FROM busybox:latest\nRUN mkdir /data && echo {name} && for i in $(seq 1 {mb // 10}); do "
        f"head -c 10485760 /dev/urandom > /data/f$i; done\n")
    return ctx


def calibrate_loops(seconds: float) -> int:
    """Iterations of a busybox sh loop that take about `seconds` of CPU here (CPU, not wall: the
    workload stays the same size on a loaded machine)."""
    n = 200_000
    return int(n * seconds / max(cpu_seconds_of(n), 1e-3))


def cpu_seconds_of(loops: int) -> float:
    """CPU seconds one stage's loop takes (measured, not assumed)."""
    r0 = os.times()
    subprocess.run(["busybox", "sh", "-c", f"i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done"], check=True)
    r1 = os.times()
    return (r1.children_user + r1.children_system) - (r0.children_user + r0.children_system)


PEERS = ("buildah", "docker")


def newest_record(builds: Path) -> dict:
    """The newest build record of a store (docs/build-records.md)."""
    import json

    return json.loads(max(builds.glob("*.json"), key=lambda p: p.name).read_text())


def overlap(steps: list[dict]) -> float:
    """How many steps ran at once on average: the sum of their durations / the time their union spans."""
    spans = sorted((s["started"], s["started"] + s["duration"]) for s in steps)
    covered, end = 0.0, float("-inf")
    for a, b in spans:
        covered += max(0.0, b - max(a, end))
        end = max(end, b)
    return sum(b - a for a, b in spans) / covered if covered else 0.0


def row(name: str, ours: float, peers: dict[str, float], rss: int, target: str = "") -> str:
    """One line: pybuild's time, then each peer's time and its speedup (peer / pybuild)."""
    cells = []
    for peer in PEERS:
        t = peers.get(peer)
        cells.append(f"{t:8.2f}s {t / ours:6.2f}x" if t else f"{'-':>9s} {'-':>7s}")
    return f"{name:34s} {ours:8.3f}s {' '.join(cells)} {rss:5d} MB  {target}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-docker", action="store_true", help="leave the legacy docker builder out")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the build benchmark needs root (RUN steps run in namespaces)")
    scale = 10 if opts.quick else 1
    only = set(filter(None, opts.only.split(",")))
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    tools: list[Tool] = []
    try:
        tar = baseimages.busybox_rootfs_tar(work / "busybox.tar")
        tools.append(Pybuild(work, tar))
        if shutil.which("buildah"):
            tools.append(Buildah(work, tar))
        if shutil.which("dockerd") and shutil.which("docker") and not opts.no_docker:
            tools.append(Docker(work, tar))
        warm = work / "warmup"  # each tool unpacks its base image once, untimed (docker's import and buildah's
        warm.mkdir()            # commit already did; pybuild's import only stores the layer blob)
        (warm / "Dockerfile").write_text("FROM busybox:latest\nRUN true\n")
        for t in tools:
            t.build(warm, "bench-warmup")
        floors = []
        for _ in range(5):
            timed([PY, "-c", "pass"], tools[0].env)
            floors.append(CPU["last"])
        floor = statistics.median(floors)
        print(f"load average {os.getloadavg()[0]:.1f}; wall times include interpreter start; speedup = peer / pybuild"
              f"; peers: {', '.join(t.name for t in tools[1:]) or 'none'}")
        print(f"{'workload':34s} {'pybuild':>9s} {'buildah':>9s} {'speedup':>7s} {'docker':>9s} {'speedup':>7s}"
              f" {'RSS':>8s}  target")

        def bench(name: str, ctx: Path, *extra: str, rebuild: bool = True, target: str = "",
                  edit: Path | None = None, peer_extra: tuple[str, ...] | None = None) -> dict[str, float]:
            if only and name.split()[0] not in only:
                return {}
            cold: dict[str, tuple[float, int]] = {}
            warm: dict[str, tuple[float, int]] = {}
            cold_cpu: dict[str, float] = {}  # CPU of the whole process tree (docker's is in its daemon: not counted)
            for t in tools:
                mine = extra if peer_extra is None or t.name == "pybuild" else peer_extra
                cold[t.name] = t.build(ctx, f"bench-{ctx.name}", *mine)
                cold_cpu[t.name] = CPU["last"]
                if rebuild:
                    times, rss, cpus = [], 0, []
                    for _ in range(opts.runs):  # an edit run edits the file anew each time
                        if t.name != "pybuild" and sum(times) > 20:  # a slow peer: its median of fewer runs
                            break
                        if edit is not None:
                            edit.write_text(f"edited {time.time()}\n")
                        w, r = t.build(ctx, f"bench-{ctx.name}", *(extra if t.name == "pybuild" else mine))
                        times.append(w)
                        cpus.append(CPU["last"])
                        rss = max(rss, r)
                    warm[t.name] = (statistics.median(times), rss)
                    CPU[t.name] = statistics.median(cpus)
            if edit is None:
                cpus = f"  (CPU {cold_cpu['pybuild']:.2f}s" + (f", buildah {cold_cpu['buildah']:.2f}s)"
                                                                 if "buildah" in cold_cpu else ")")
                print(row(f"{name} cold", cold["pybuild"][0], {k: v[0] for k, v in cold.items()}, cold["pybuild"][1],
                          "faster than buildah, no slower than docker") + cpus)
            if rebuild:
                print(row(f"{name} {'edit' if edit else 'cached'}", warm["pybuild"][0],
                          {k: v[0] for k, v in warm.items()}, warm["pybuild"][1], target)
                      + f"  (CPU {CPU['pybuild']:.3f}s, interpreter floor {floor:.3f}s CPU)")
            sys.stdout.flush()
            return {"cold": cold["pybuild"][0], "cpu": cold_cpu["pybuild"]}

        def want(name: str) -> bool:
            return not only or name in only

        small = bench("4-step", make_steps(work, 4), target="< 0.1 s")
        record = Path(tools[0].env["PYBUILD_ROOT"]) / "builds"
        if want("40-step"):
            bench("40-step", make_steps(work, 40), target="< 0.1 s, >= 15x buildah")
        if want("20k-files") or want("20k-edit"):
            big = make_bigctx(work, 20_000 // scale, 156 // scale)
            bench("20k-files", big, target="< 0.5 s, >= 20x buildah")
            if bench("20k-edit", big, target="< 3 s, >= 3x buildah", edit=big / "src" / "d000" / "f00000.bin"):
                ran = [f"{s['kind']} {s['duration']:.2f}s" for s in newest_record(record)["steps"] if s["cache"] == "miss"]
                print(f"{'20k-edit: steps re-run (pybuild)':34s} {', '.join(ran) or 'none'}  (target: the COPY and the "
                      "steps after it)")
        if want("4-stages"):
            loops = calibrate_loops(2.0)
            cpu = cpu_seconds_of(loops)
            if not small:
                small = {"cold": tools[0].build(make_steps(work, 4), "bench-steps4")[0]}
            load = os.getloadavg()[0]
            res = bench("4-stages", make_stages(work, loops), "--jobs", "2", rebuild=False)
            runs = [s for s in newest_record(record)["steps"] if s["kind"] == "RUN"]
            stages_cpu = sum(s["cpu_seconds"] for s in runs)
            ideal = stages_cpu / 2 + small["cold"]
            print(f"{'4-stages ideal (cpu/2 + 4-step cold)':34s} {ideal:8.3f}s   actual/ideal "
                  f"{res['cold'] / ideal:.2f} (target <= 1.2; the stages' CPU {stages_cpu:.2f}s as recorded in the "
                  f"build; load average {load:.1f} before it)")
            host = 4 * cpu / 2 + small["cold"]
            print(f"{'4-stages ideal, host-measured CPU':34s} {host:8.3f}s   actual/ideal {res['cold'] / host:.2f} "
                  f"(the same loops timed one at a time on the host: {4 * cpu:.2f}s CPU)")
            print(f"{'4-stages parallelism':34s} {overlap(runs):8.2f}   (sum of the RUN steps' wall times / the wall time "
                  f"they span: 2.00 = two at once throughout, 1.00 = serial); pybuild CPU in all {res['cpu']:.2f}s")
        if want("300MB-RUN"):
            res = bench("300MB-RUN", make_bigrun(work, 300 // scale), rebuild=False)
            (step,) = [s for s in newest_record(record)["steps"] if s["kind"] == "RUN"]
            print(f"{'300MB-RUN where the time goes':34s} RUN step {step['duration']:.2f}s, of which its process's CPU "
                  f"{step['cpu_seconds']:.2f}s (writing the files); pybuild CPU in all {res['cpu']:.2f}s; "
                  f"the rest of the build {res['cold'] - step['duration']:.2f}s")
        if want("300MB-RUN-zstd"):
            bench("300MB-RUN-zstd", make_bigrun(work, 300 // scale, "bigrun-zstd"), "-o",
                  "type=image,compression=zstd", rebuild=False, peer_extra=())
    finally:
        for t in tools:
            if isinstance(t, Docker):
                t.stop()
        subprocess.run(["umount", "-R", str(work / "buildah")], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
