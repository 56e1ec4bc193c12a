"""`pybuild build` with privileges and remote sources: RUN --security, RUN --mount=type=ssh, ADD of git URLs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import pybuild, requires_root

pytestmark = requires_root


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> dict[str, str]:
    """A store shared by this module's builds, with busybox:latest imported; returns the env."""
    root = tmp_path_factory.mktemp("sources-store")
    env = {"PYBUILD_ROOT": str(root)}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    return env


def _context(tmp: Path, dockerfile: str) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _output(stderr: str) -> list[str]:
    """The lines RUN steps printed (`#N 0.123 text` in plain progress), without step headers."""
    return [m.group(1) for m in re.finditer(r"^#\d+ \d+\.\d+ (.*)$", stderr, re.M)]


def test_security_insecure_needs_allow_and_gets_every_capability(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\n"
                   "RUN --security=insecure mkdir /m && mount -t tmpfs none /m && echo insecure-mounted\n"
                   "RUN mkdir /n && if mount -t tmpfs none /n; then echo sandbox-mounted; else echo sandbox-denied; fi\n")
    refused = pybuild("build", "--progress=plain", str(ctx), env=store, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Dockerfile:2" in refused.stderr and "--allow security.insecure" in refused.stderr
    assert "#2" not in refused.stderr  # refused before anything ran
    built = pybuild("build", "--allow", "security.insecure", "--progress=plain", str(ctx), env=store)
    out = _output(built.stderr)
    assert "insecure-mounted" in out and "sandbox-denied" in out and "sandbox-mounted" not in out
    cached = pybuild("build", "--progress=plain", str(ctx), env=store, check=False)  # a cached step still needs it
    assert cached.returncode != 0 and "security.insecure" in cached.stderr
    bad = pybuild("build", "--allow", "everything", str(ctx), env=store, check=False)
    assert bad.returncode != 0 and "invalid --allow 'everything'" in bad.stderr
