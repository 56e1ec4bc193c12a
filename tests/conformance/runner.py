"""Build the cases of fixtures/conformance with each peer (peers' results from the cache when
they are there) and hold what is needed for it: a pybuild store, a dockerd, a buildah root.

    Suite(work, base_tar) ; suite.snapshot(peer, case) -> dict ; suite.close()
    CASES: the case directories (each a Dockerfile and its context)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.conformance import peers
from tests.conformance.snapshot import snapshot

CASES_DIR = peers.ROOT / "fixtures" / "conformance"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "Dockerfile").exists())


class Suite:
    def __init__(self, work: Path, base_tar: Path) -> None:
        self.work, self.base_tar = work, base_tar
        self.base_digest = peers.file_digest(base_tar)
        self._store: dict[str, str] | None = None
        self._dockerd: peers.Dockerd | None = None
        self._buildah: peers.Buildah | None = None

    def store(self) -> dict[str, str]:
        if self._store is None:
            root = self.work / "pybuild-store"
            env = {"PYBUILD_ROOT": str(root)}
            peers._run([peers.sys.executable, "-m", "builder", "import", str(self.base_tar), "debian:bookworm"],
                       {**env, "PYTHONPATH": str(peers.ROOT)})
            self._store = env
        return self._store

    def snapshot(self, peer: str, case: str) -> dict[str, Any]:
        """`peer`'s image of `case` (a cached snapshot for BuildKit and buildah when there is one)."""
        case_dir = CASES_DIR / case
        if peer != "pybuild":
            got = peers.cached(peer, case_dir, self.base_digest)
            if got is not None:
                return got
        if peer == "pybuild":
            return peers.pybuild_build(case_dir, self.store())
        out = self.work / f"{peer}-{case}.tar"
        try:
            if peer == "buildkit":
                if self._dockerd is None:
                    self._dockerd = peers.Dockerd(self.work / "dockerd", self.base_tar)
                self._dockerd.build(case_dir, out)
            else:
                if self._buildah is None:
                    base = self.work / "base-docker.tar"
                    peers._run([peers.sys.executable, "-m", "builder", "save", "-o", str(base), "debian:bookworm"],
                               {**self.store(), "PYTHONPATH": str(peers.ROOT)})
                    self._buildah = peers.Buildah(self.work / "buildah", base)
                self._buildah.build(case_dir, out)
            snap = snapshot(str(out))
        finally:
            if out.exists():
                out.unlink()
        if peer != "pybuild":
            peers.remember(peer, case_dir, self.base_digest, snap)
        return snap

    def close(self) -> None:
        if self._dockerd is not None:
            self._dockerd.close()
        if self._buildah is not None:
            peers._run([*self._buildah.args, "rm", "--all"])
        shutil.rmtree(self.work / "pybuild-store", ignore_errors=True)
