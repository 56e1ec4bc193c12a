"""Multi-platform build benchmark (issue 16): bench's 40-step workload (w2) for linux/amd64 and
linux/arm64 at once, against a single-platform build of it and against buildah, same machine, one run.

    python3 bench/multiplatform.py [--runs N]

Both tools build `ARG TARGETARCH` + `FROM busybox:$TARGETARCH` + the 40 steps of bench/build.py,
from local busybox images for each architecture (Debian's busybox-static and busybox-static:arm64;
the arm64 RUN steps run under qemu-user-static). Figures:

- the native (amd64) half of the two-platform cold build against a single-platform cold build (amd64),
  both from their build records: from the first start to the last end of the amd64 steps (target: no
  slower); medians of --runs pairs of cold builds (each in fresh stores, single then two-platform),
  with each pair's ratio printed (one cold pair is too noisy to judge a 10% difference);
- two-platform cold build: pybuild (median of the same --runs) vs `buildah bud --platform
  linux/amd64,linux/arm64 --manifest` (one run: ~40 s each) (target: faster);
- two-platform cached rebuild, median of --runs: pybuild vs buildah (targets: < 0.3 s, >= 10x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "fixtures"))

import baseimages  # noqa: E402
from build import CPU, PY, newest_record, steps_dockerfile, timed  # noqa: E402  (bench/build.py)

PLATFORMS = "linux/amd64,linux/arm64"


def dockerfile() -> str:
    steps = steps_dockerfile(40).splitlines()[1:]  # the 40-step workload without its FROM
    return "ARG TARGETARCH\nFROM busybox:$TARGETARCH\n" + "\n".join(steps) + "\n"


def context(base: Path, name: str, text: str) -> Path:
    ctx = base / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(text)
    (ctx / "a.txt").write_text("a\n")
    return ctx


def steps_span(record: dict, steps_per_platform: int) -> float:
    """Wall time of the first platform's (amd64's) steps in a build record, from the first start to the
    last end: the first solver numbers its steps first (after the [internal] ones), so they are the
    `steps_per_platform` lowest ids. Used for both builds, so that like is compared with like."""
    mine = sorted(record["steps"], key=lambda s: s["id"])[:steps_per_platform]
    return max(s["started"] + s["duration"] for s in mine) - min(s["started"] for s in mine)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the build benchmark needs root (RUN steps run in namespaces)")
    work = Path(tempfile.mkdtemp(prefix="bench-mp-"))
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYBUILD_ROOT"] = str(work / "store")
    env_single = {**env, "PYBUILD_ROOT": str(work / "store-single")}  # its own cache: the amd64 half would hit it
    pb = [PY, "-m", "builder"]

    def fresh_stores() -> None:
        """Empty stores for a cold pair, each with the two busybox bases."""
        for e in (env, env_single):
            shutil.rmtree(e["PYBUILD_ROOT"], ignore_errors=True)
            for arch, tar in tars.items():
                subprocess.run([*pb, "import", "--platform", f"linux/{arch}", str(tar), f"busybox:{arch}"], env=e,
                               check=True, stdout=subprocess.DEVNULL)

    buildah = ["buildah", "--root", str(work / "buildah"), "--runroot", str(work / "buildah-run"),
               "--storage-driver", "overlay"]
    try:
        tars = {arch: baseimages.busybox_rootfs_tar(work / f"busybox-{arch}.tar", None if arch == "amd64" else arch)
                for arch in ("amd64", "arm64")}
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "builder"), str(ROOT / "grammar"),
                        str(ROOT / "runtime")], env=env, check=True)
        for arch, tar in tars.items():
            img = subprocess.run([*buildah, "from", "scratch"], env=env, check=True, capture_output=True,
                                 text=True).stdout.strip()
            subprocess.run([*buildah, "add", img, str(tar), "/"], env=env, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([*buildah, "config", "--arch", arch, "--os", "linux", img], env=env, check=True)
            subprocess.run([*buildah, "commit", "-q", img, f"busybox:{arch}"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        text = dockerfile()
        steps = sum(1 for line in text.splitlines() if line.split(" ", 1)[0] in ("FROM", "RUN", "COPY", "WORKDIR"))
        single = context(work, "single", text)
        multi = context(work, "multi", text)
        bud = context(work, "bud", text)

        pairs = []  # (native half, single, two-platform wall, CPU two platforms, CPU single) per cold pair
        for _ in range(opts.runs):
            fresh_stores()
            timed([*pb, "build", "-q", "-t", "w2:single", str(single)], env_single)
            single_cpu = CPU["last"]
            single_cold = steps_span(newest_record(work / "store-single" / "builds"), steps)
            multi_cold, rss = timed([*pb, "build", "-q", "--platform", PLATFORMS, "-t", "w2:multi", str(multi)], env)
            pairs.append((steps_span(newest_record(work / "store" / "builds"), steps), single_cold, multi_cold,
                          CPU["last"], single_cpu))
        half, single_cold, multi_cold, multi_cpu, single_cpu = (statistics.median(f) for f in zip(*pairs))
        single_cached = statistics.median(timed([*pb, "build", "-q", "-t", "w2:single", str(single)], env_single)[0]
                                          for _ in range(opts.runs))
        cached = statistics.median(timed([*pb, "build", "-q", "--platform", PLATFORMS, "-t", "w2:multi",
                                          str(multi)], env)[0] for _ in range(opts.runs))
        bud_argv = [*buildah, "bud", "--runtime", "runc", "--layers", "--pull=never", "-q", "--platform", PLATFORMS,
                    "--manifest", "w2:manifest", str(bud)]
        bud_cold, _ = timed(bud_argv, env)
        bud_cached = statistics.median(timed(bud_argv, env)[0] for _ in range(opts.runs))
        arches = [m["platform"]["architecture"] for m in json.loads(subprocess.run(
            [*buildah, "manifest", "inspect", "w2:manifest"], env=env, check=True, capture_output=True,
            text=True).stdout)["manifests"]]
        print(f"load average {os.getloadavg()[0]:.1f}; the first row compares step spans from build records, the others wall times with interpreter start; "
              f"buildah's manifest holds {arches}")
        print(f"{'figure':46s} {'pybuild':>9s} {'peer':>9s} {'ratio':>7s}  target")
        first = f"native half vs single build (cold, median {opts.runs})"
        print(f"{first:46s} {half:8.2f}s {single_cold:8.2f}s "
              f"{single_cold / half:6.2f}x  >= 1x (no slower)")
        print(f"{'two platforms cold vs buildah':46s} {multi_cold:8.2f}s {bud_cold:8.2f}s "
              f"{bud_cold / multi_cold:6.2f}x  > 1x (faster)   pybuild RSS {rss} MB")
        print(f"{'two platforms cached vs buildah':46s} {cached:8.3f}s {bud_cached:8.2f}s "
              f"{bud_cached / cached:6.2f}x  < 0.3 s, >= 10x")
        print(f"{'(single-platform cached rebuild, for scale)':46s} {single_cached:8.3f}s")
        print(f"{'(CPU user+sys, cold: two platforms, single)':46s} {multi_cpu:8.2f}s {single_cpu:8.2f}s")
        print("(each cold pair: native half / single = ratio: "
              + ", ".join(f"{h:.2f}/{s:.2f}={s / h:.2f}x" for h, s, *_ in pairs) + ")")
    finally:
        subprocess.run(["umount", "-R", str(work / "buildah")], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
