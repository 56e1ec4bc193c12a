"""Build one conformance case with pybuild, BuildKit (dockerd's, on a private socket) or buildah,
and keep BuildKit's and buildah's snapshots on disk keyed by Dockerfile, context and base.

    build_snapshot(peer, case_dir, base_tar, work) -> dict   (`snapshot.snapshot` of the result)
    Dockerd(work)                                           a private dockerd with the base imported

The peers are what the suite checks against, so their results are cached
($PYBUILD_FIXTURE_CACHE/conformance/<peer>/<key>.json); pybuild, the code under test, always builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conformance.snapshot import of_layers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures"))
import baseimages  # noqa: E402

PEERS = ("pybuild", "buildkit", "buildah")
CACHE_VERSION = 2  # bump when snapshot() changes what it records
DOCKER = "/usr/bin/docker"  # Debian's client: talks to dockerd's embedded BuildKit without buildx


class PeerError(Exception):
    """A peer could not build the case (its output's tail is the message)."""


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered beside it by size and mtime (the base tar is 200 MB)."""
    st = path.stat()
    memo = path.with_name(path.name + ".sha256")
    stamp = f"{st.st_size} {st.st_mtime_ns}"
    try:
        known_stamp, known = memo.read_text().split("\n")[:2]
        if known_stamp == stamp:
            return known
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    memo.write_text(f"{stamp}\n{h.hexdigest()}\n")
    return h.hexdigest()


def case_key(peer: str, case_dir: Path, base_digest: str) -> str:
    """What a peer's result depends on: the case's files (Dockerfile and context) and the base."""
    h = hashlib.sha256(f"{CACHE_VERSION}\0{peer}\0{base_digest}\0".encode())
    for p in sorted(case_dir.rglob("*")):
        rel = p.relative_to(case_dir).as_posix()
        if p.is_symlink():
            h.update(f"L {rel} {os.readlink(p)}\0".encode())
        elif p.is_file():
            x = "x" if p.stat().st_mode & 0o100 else "-"  # what git keeps of a mode (a checkout's umask aside)
            h.update(f"F {rel} {x}\0".encode() + p.read_bytes() + b"\0")
        elif p.is_dir():
            h.update(f"D {rel}\0".encode())
    return h.hexdigest()[:32]


def cache_path(peer: str, key: str) -> Path:
    return baseimages.fixture_cache() / "conformance" / peer / f"{key}.json"


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise PeerError(f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{tail}")
    return proc.stdout


class Dockerd:
    """A dockerd of our own (private socket, data root, no bridge, no iptables) with the base
    imported as debian:bookworm; `close()` stops it."""

    def __init__(self, work: Path, base_tar: Path) -> None:
        self.dir = work
        work.mkdir(parents=True, exist_ok=True)
        self.sock = work / "docker.sock"
        self.env = {"DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "1"}
        self.log = open(work / "dockerd.log", "w")
        self.proc = subprocess.Popen(["dockerd", "--host", f"unix://{self.sock}", "--data-root", str(work / "root"),
                                      "--exec-root", str(work / "exec"), "--pidfile", str(work / "pid"),
                                      "--iptables=false", "--bridge=none"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while subprocess.run([DOCKER, "version"], capture_output=True, env={**os.environ, **self.env}).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise PeerError(f"dockerd did not start (see {work / 'dockerd.log'})")
            time.sleep(0.3)
        _run([DOCKER, "import", str(base_tar), "debian:bookworm"], self.env)

    def build(self, case_dir: Path, out: Path) -> None:
        tag = f"conformance-{case_dir.name}:latest"
        _run([DOCKER, "build", "--network", "host", "--progress", "plain", "-t", tag, str(case_dir)], self.env)
        _run([DOCKER, "save", "-o", str(out), tag], self.env)
        _run([DOCKER, "rmi", tag], self.env)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Buildah:
    """buildah with a private storage root, the base pulled from a docker-archive of it."""

    def __init__(self, work: Path, base_archive: Path) -> None:
        self.args = ["buildah", "--root", str(work / "root"), "--runroot", str(work / "run"),
                     "--storage-driver", "overlay"]
        work.mkdir(parents=True, exist_ok=True)
        _run([*self.args, "pull", "-q", f"docker-archive:{base_archive}"])
        _run([*self.args, "tag", _run([*self.args, "images", "-q"]).split()[0], "debian:bookworm"])

    def build(self, case_dir: Path, out: Path) -> None:
        tag = f"localhost/conformance-{case_dir.name}:latest"
        _run([*self.args, "bud", "--runtime", "runc", "--network", "host", "--layers", "--format", "docker",
              "-t", tag, str(case_dir)])
        _run([*self.args, "push", tag, f"docker-archive:{out}"])
        _run([*self.args, "rmi", tag])


def pybuild_build(case_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Build with pybuild into its store and read the image from there (no 200 MB export per case)."""
    from builder.store import Store

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    tag = f"conformance-{case_dir.name}:latest"
    _run([sys.executable, "-m", "builder", "build", "--progress=plain", "-t", tag, str(case_dir)],
         {**env, "PYTHONPATH": path})
    image = Store.open(env["PYBUILD_ROOT"]).resolve(tag)
    layers = [(str(layer.diff_id), layer.open_uncompressed) for layer in image.layers()]
    return of_layers(json.loads(image.raw_config()), layers)  # type: ignore[arg-type]


def cached(peer: str, case_dir: Path, base_digest: str) -> dict[str, Any] | None:
    try:
        return json.loads(cache_path(peer, case_key(peer, case_dir, base_digest)).read_text())
    except (OSError, ValueError):
        return None


def remember(peer: str, case_dir: Path, base_digest: str, snap: dict[str, Any]) -> None:
    path = cache_path(peer, case_key(peer, case_dir, base_digest))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(snap))
    os.replace(tmp, path)


def peer_available(peer: str) -> str | None:
    """Why `peer` cannot run here (None: it can)."""
    need = {"pybuild": [], "buildkit": ["dockerd", DOCKER], "buildah": ["buildah", "runc"]}[peer]
    missing = [n for n in need if shutil.which(n) is None]
    return f"not installed: {', '.join(missing)}" if missing else None
