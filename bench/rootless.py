"""Rootless benchmarks: pybuild as an unprivileged user against pybuild as root, and against
buildah rootless (`buildah bud` as the same user), on bench/build.py's workloads, in one run.

    python3 bench/rootless.py [--quick] [--runs N] [--only 4-step,40-step,20k-files,300MB-RUN]

Run as root: it makes the user `pbrootless` (with a sub-id range) as the tests do
(fixtures/rootless_user.py). Every tool runs through `runuser -u USER --` with the same clean
environment (root pybuild too, as `runuser -u root`), on the same interpreter (Debian's python3 in
the test venv) and the same byte-compiled copy of the code; the rootless pybuild uses the kernel's
overlayfs in its user namespace (fuse-overlayfs is excluded from the targets). Targets (issue 15):
rootless/root within 1.2x cached and 1.5x cold; buildah rootless at least 10x slower cached, and
slower cold.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

import baseimages  # noqa: E402
import rootless_user  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_build", ROOT / "bench" / "build.py")
bb = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(bb)  # type: ignore[union-attr]

USER = "pbrootless"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # runuser itself; what runs under it gets As.env


class As:
    """One tool, run as one user through runuser with a clean environment."""

    def __init__(self, name: str, user: str, home: str, env: dict[str, str]) -> None:
        self.name, self.user = name, user
        self.env = {"HOME": home, "USER": user, "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    **env}

    def argv(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *cmd]

    def check(self, *cmd: str) -> None:
        subprocess.run(self.argv(*cmd), check=True, stdout=subprocess.DEVNULL)

    def build(self, ctx: Path, tag: str) -> float:
        raise NotImplementedError


class Pybuild(As):
    def __init__(self, name: str, user: str, home: str, store: Path, python: str, code: Path, tar: Path) -> None:
        super().__init__(name, user, home, {"PYBUILD_ROOT": str(store), "PYTHONPATH": str(code)})
        self.python = python
        self.check(python, "-m", "builder", "import", str(tar), "busybox:latest")

    def build(self, ctx: Path, tag: str) -> float:
        return bb.timed(self.argv(self.python, "-m", "builder", "build", "-q", "-t", tag, str(ctx)), ENV)[0]


class Buildah(As):
    def __init__(self, user: str, home: str, work: Path, archive: Path) -> None:
        xdg = work / "xdg"
        super().__init__("buildah", user, home, {"XDG_RUNTIME_DIR": str(xdg)})
        self.check("mkdir", "-m", "700", str(xdg))
        self.base = ["buildah", "--root", str(work / "buildah"), "--runroot", str(work / "buildah-run"),
                     "--storage-driver", "overlay"]
        self.check(*self.base, "pull", "-q", f"docker-archive:{archive}")

    def build(self, ctx: Path, tag: str) -> float:
        return bb.timed(self.argv(*self.base, "bud", "--runtime", "runc", "--layers", "-q", "-t", tag, str(ctx)), ENV)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the big workloads tenfold smaller")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated workloads (4-step,40-step,20k-files,300MB-RUN)")
    opts = ap.parse_args()
    only = set(filter(None, opts.only.split(",")))
    if os.geteuid() != 0:
        raise SystemExit("run as root: it creates the unprivileged user it measures")
    scale = 10 if opts.quick else 1
    entry = rootless_user.ensure_user(USER, subids=True)
    python = str(rootless_user.venv() / "bin/python")
    work = Path(tempfile.mkdtemp(prefix="bench-rootless-"))
    os.chmod(work, 0o755)
    try:
        code = rootless_user.copy_code(work / "code", compile=True)
        tar = baseimages.busybox_rootfs_tar(work / "busybox.tar")
        os.chmod(tar, 0o644)
        userdir = work / "user"
        userdir.mkdir()
        os.chown(userdir, entry.pw_uid, entry.pw_gid)
        root = Pybuild("root", "root", "/root", work / "root-store", python, code, tar)
        rootless = Pybuild("rootless", USER, entry.pw_dir, userdir / "store", python, code, tar)
        tools: list[As] = [root, rootless]
        if shutil.which("buildah"):
            archive = userdir / "busybox-archive.tar"
            rootless.check(python, "-m", "builder", "save", "-o", str(archive), "busybox:latest")
            tools.append(Buildah(USER, entry.pw_dir, userdir, archive))
        warm = work / "warmup"
        warm.mkdir()
        (warm / "Dockerfile").write_text("FROM busybox:latest\nRUN true\n")
        for t in tools:
            t.build(warm, "bench-warmup")
        print(f"load average {os.getloadavg()[0]:.1f}; every tool through runuser, wall times; "
              f"ratios: rootless/root (target <= 1.2 cached, <= 1.5 cold), buildah-rootless/rootless "
              f"(target >= 10 cached, > 1 cold)")
        print(f"{'workload':22s} {'root':>8s} {'rootless':>9s} {'ratio':>6s} {'buildah':>9s} {'speedup':>8s}")

        def bench(name: str, ctx: Path, rebuild: bool = True) -> None:
            if only and name not in only:
                return
            cold = {t.name: t.build(ctx, f"b-{ctx.name}") for t in tools}
            rows = [("cold", cold)]
            if rebuild:
                cached = {}
                for t in tools:
                    times: list[float] = []
                    for _ in range(opts.runs):
                        if t.name == "buildah" and sum(times) > 20:
                            break
                        times.append(t.build(ctx, f"b-{ctx.name}"))
                    cached[t.name] = statistics.median(times)
                rows.append(("cached", cached))
            for kind, r in rows:
                peer = r.get("buildah")
                print(f"{name + ' ' + kind:22s} {r['root']:7.3f}s {r['rootless']:8.3f}s "
                      f"{r['rootless'] / r['root']:5.2f}x "
                      + (f"{peer:8.3f}s {peer / r['rootless']:7.2f}x" if peer else f"{'-':>9s} {'-':>8s}"))
            sys.stdout.flush()

        bench("4-step", bb.make_steps(work, 4))
        bench("40-step", bb.make_steps(work, 40))
        if not only or "20k-files" in only:
            bench("20k-files", bb.make_bigctx(work, 20_000 // scale, 156 // scale))
        if not only or "300MB-RUN" in only:
            bench("300MB-RUN", bb.make_bigrun(work, 300 // scale), rebuild=False)
    finally:
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
