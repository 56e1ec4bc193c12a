"""Benchmark: the real applications (fixtures/apps/nginx, fixtures/apps/pyweb, the Debian Tomcat of
fixtures/examples/tomcat) built cold, rebuilt fully cached, and rebuilt after a one-file edit of
the app, by pybuild, BuildKit (a private dockerd) and buildah (--layers), in one run.

    python3 bench/apps.py [nginx pyweb tomcat]

Targets: cold and one-file edit no slower than BuildKit, cached no slower than BuildKit and at
least 5x faster than buildah. Caveat: the apt downloads of a cold build come from the Debian
mirror for every builder (no local apt cache or loopback mirror yet), so cold times include
network time; the cached and edit builds download nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conformance.peers import DOCKER, Buildah, Dockerd  # noqa: E402

sys.path.insert(0, str(ROOT / "fixtures"))
import baseimages  # noqa: E402

APPS = {"nginx": ("fixtures/apps/nginx", "Dockerfile", "index.html"),
        "pyweb": ("fixtures/apps/pyweb", "Dockerfile", "app.py"),
        "tomcat": ("fixtures/examples/tomcat", "Dockerfile.debian", "index.jsp")}


def _time(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main(names: list[str]) -> None:
    tar = baseimages.cached_debian_tar()
    with tempfile.TemporaryDirectory(prefix="bench-apps-") as tmp:
        work = Path(tmp)
        env = {"PYTHONPATH": str(ROOT), "PYBUILD_ROOT": str(work / "store")}
        pb = [sys.executable, "-m", "builder"]
        subprocess.run([*pb, "import", str(tar), "debian:bookworm"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, **env})
        base = work / "base.tar"
        subprocess.run([*pb, "save", "-o", str(base), "debian:bookworm"], check=True, env={**os.environ, **env})
        dockerd = Dockerd(work / "dockerd", tar)
        buildah = Buildah(work / "buildah", base)
        try:
            rows = []
            for name in names:
                src, dockerfile, edited = APPS[name]
                ctx = work / f"ctx-{name}"
                shutil.copytree(ROOT / src, ctx)
                df = str(ctx / dockerfile)
                tools = {
                    "pybuild": lambda: _time([*pb, "build", "-q", "-t", f"{name}:b", "-f", df, str(ctx)], env),
                    "buildkit": lambda: _time([DOCKER, "build", "-q", "--network", "host", "-t", f"{name}:b", "-f", df,
                                               str(ctx)], dockerd.env),
                    "buildah": lambda: _time([*buildah.args, "bud", "-q", "--runtime", "runc", "--network", "host",
                                              "--layers", "-t", f"{name}:b", "-f", df, str(ctx)]),
                }
                for tool, build in tools.items():
                    (ctx / edited).write_text((ROOT / src / edited).read_text())
                    cold = build()
                    cached = build()
                    with open(ctx / edited, "a") as f:
                        f.write(f"\n<!-- edit {time.time()} -->\n" if not edited.endswith(".py") else "\n# edit\n")
                    edit = build()
                    rows.append((name, tool, cold, cached, edit))
                    print(f"{name:7} {tool:9} cold {cold:7.2f} s  cached {cached:6.2f} s  one-file edit {edit:6.2f} s",
                          flush=True)
        finally:
            dockerd.close()
            subprocess.run([*buildah.args, "rm", "--all"], capture_output=True)
            subprocess.run([*buildah.args, "rmi", "--all", "--force"], capture_output=True)
    print()
    for name in names:
        r = {tool: (c, k, e) for n, tool, c, k, e in rows if n == name}
        p, b, h = r["pybuild"], r["buildkit"], r["buildah"]
        print(f"{name:7} pybuild/BuildKit: cold {p[0] / b[0]:.2f}  cached {p[1] / b[1]:.2f}  edit {p[2] / b[2]:.2f}   "
              f"buildah/pybuild cached: {h[1] / p[1]:.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:] or list(APPS))
