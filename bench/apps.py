"""Benchmark: the real applications (fixtures/apps/nginx, fixtures/apps/pyweb, the Debian Tomcat of
fixtures/examples/tomcat) built cold, rebuilt fully cached, and rebuilt after a one-file edit of
the app, by pybuild, BuildKit (a private dockerd) and buildah (--layers), in one run.

    python3 bench/apps.py [--python PATH] [nginx pyweb tomcat]

Targets: cold and one-file edit no slower than BuildKit, cached (the median of three rebuilds) no
slower than BuildKit and at least 5x faster than buildah. The apt packages come from a loopback mirror for every builder
(APT_MIRROR build arg, --network host): the .debs each app needs over the debian:bookworm base
are downloaded once into $PYBUILD_FIXTURE_CACHE/apt-debs, indexed with dpkg-scanpackages and served
on 127.0.0.1, so cold times compare the builders, not the network. As docker import and buildah
pull extract the base before any build, pybuild's one-time unpack of the base snapshot is done
(and printed) before the timings.

pybuild runs as `python -m builder` (bytecode caching on) from a venv of Debian's python3 holding
its runtime dependencies (fixtures/rootless_user.venv, as bench/rootless.py), as an installed
pybuild would: not from the development interpreter, whose site-packages may hold .pth files that
run at every start (an editable install's import finder, a CA hook of this sandbox: ~40-60 ms, as
much as a whole cached rebuild). `--python PATH` picks another interpreter (e.g. sys.executable)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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
PACKAGES = {"nginx": ["nginx-light"], "pyweb": ["python3", "python3-jinja2"], "tomcat": ["tomcat10"]}


def apt_repo(base_tar: Path, packages: list[str]) -> Path:
    """A flat apt repository (Packages + .debs) holding `packages` and what they pull in over the
    base image: host apt run with the image's dpkg status and private lists/caches (no host lock)."""
    cache = Path(os.environ.get("PYBUILD_FIXTURE_CACHE", Path.home() / ".cache" / "pybuild-fixtures"))
    repo, state = cache / "apt-debs", cache / "apt-state"
    for d in (repo / "partial", state / "lists" / "partial", state / "parts"):
        d.mkdir(parents=True, exist_ok=True)
    status = state / "status"
    if not status.exists():
        status.write_bytes(subprocess.run(["tar", "-xOf", str(base_tar), "./var/lib/dpkg/status"], check=True,
                                          capture_output=True).stdout)
    (state / "sources.list").write_text(f"deb {baseimages.debian_mirror()} {baseimages.DEBIAN_SUITE} main\n")
    apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
           "-o", f"Dir::Etc::SourceParts={state / 'parts'}", "-o", f"Dir::State::Lists={state / 'lists'}",
           "-o", f"Dir::State::status={status}", "-o", f"Dir::Cache={state}",
           "-o", f"Dir::Cache::Archives={repo}", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]
    if not (state / "lists" / "updated").exists():
        subprocess.run([*apt, "update"], check=True, stdout=subprocess.DEVNULL)
        (state / "lists" / "updated").touch()
    subprocess.run([*apt, "install", "-y", "--download-only", "--no-install-recommends", *packages], check=True,
                   stdout=subprocess.DEVNULL)
    index = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True,
                           capture_output=True).stdout
    (repo / "Packages").write_bytes(index)
    return repo


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) from a daemon thread; returns the URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _time(argv: list[str], env: dict[str, str] | None = None) -> float:
    full = {**os.environ, **(env or {})}
    full.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as an installed program's
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=full)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main(names: list[str], python: str) -> None:
    print(f"pybuild runs on {python}", flush=True)
    tar = baseimages.cached_debian_tar()
    server, mirror = serve(apt_repo(tar, [p for n in names for p in PACKAGES[n]]))
    arg = ["--build-arg", f"APT_MIRROR={mirror}"]
    with tempfile.TemporaryDirectory(prefix="bench-apps-") as tmp:
        work = Path(tmp)
        env = {"PYTHONPATH": str(ROOT), "PYBUILD_ROOT": str(work / "store")}
        pb = [python, "-m", "builder"]
        subprocess.run([*pb, "import", str(tar), "debian:bookworm"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, **env})
        base = work / "base.tar"
        subprocess.run([*pb, "save", "-o", str(base), "debian:bookworm"], check=True, env={**os.environ, **env})
        # docker import and buildah pull extract the base into their snapshotters before any build;
        # pybuild unpacks it at the first RUN on it: done here, outside the timings, and printed.
        warm = work / "warm"
        warm.mkdir()
        (warm / "Dockerfile").write_text("FROM debian:bookworm\nRUN true\n")
        print(f"pybuild base snapshot unpack (one-time, untimed below): "
              f"{_time([*pb, 'build', '-q', '--network', 'host', str(warm)], env):.2f} s", flush=True)
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
                    "pybuild": lambda: _time([*pb, "build", "-q", "--network", "host", *arg, "-t", f"{name}:b", "-f", df,
                                              str(ctx)], env),
                    "buildkit": lambda: _time([DOCKER, "build", "-q", "--network", "host", *arg, "-t", f"{name}:b",
                                               "-f", df, str(ctx)], dockerd.env),
                    "buildah": lambda: _time([*buildah.args, "bud", "-q", "--runtime", "runc", "--network", "host",
                                              "--layers", *arg, "-t", f"{name}:b", "-f", df, str(ctx)]),
                }
                for tool, build in tools.items():
                    (ctx / edited).write_text((ROOT / src / edited).read_text())
                    cold = build()
                    cached = statistics.median(build() for _ in range(3))  # the first right after the cold build
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
            server.shutdown()
    print()
    for name in names:
        r = {tool: (c, k, e) for n, tool, c, k, e in rows if n == name}
        p, b, h = r["pybuild"], r["buildkit"], r["buildah"]
        print(f"{name:7} pybuild/BuildKit: cold {p[0] / b[0]:.2f}  cached {p[1] / b[1]:.2f}  edit {p[2] / b[2]:.2f}   "
              f"buildah/pybuild cached: {h[1] / p[1]:.1f}x")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the real applications, built by pybuild, BuildKit and buildah")
    parser.add_argument("--python", help="the interpreter pybuild runs on (default: a venv of Debian's python3)")
    parser.add_argument("apps", nargs="*", metavar="APP", help=f"{', '.join(APPS)} (default: all)")
    opts = parser.parse_args()
    unknown = [a for a in opts.apps if a not in APPS]
    if unknown:
        parser.error(f"unknown app {unknown[0]!r} (choose from {', '.join(APPS)})")
    if opts.python is None:
        import rootless_user

        opts.python = str(rootless_user.venv() / "bin" / "python")
    main(opts.apps or list(APPS), opts.python)
