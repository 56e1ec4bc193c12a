"""Fixtures shared by the end-to-end build tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import pybuild


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> dict[str, str]:
    """A store shared by one module's builds, with busybox:latest imported; returns the env."""
    root = tmp_path_factory.mktemp("build-store")
    env = {"PYBUILD_ROOT": str(root)}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    return env


@pytest.fixture(scope="module")
def debian_store(tmp_path_factory: pytest.TempPathFactory, debian_tar: Path) -> dict[str, str]:
    """A store shared by one module's builds, with debian:bookworm imported; returns the env."""
    root = tmp_path_factory.mktemp("debian-store")
    env = {"PYBUILD_ROOT": str(root)}
    pybuild("import", str(debian_tar), "debian:bookworm", env=env)
    return env


@pytest.fixture(scope="module")
def buildkit(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[object]:
    """A private dockerd (BuildKit inside; its socket, data and exec roots of its own) with the same
    busybox as busybox:latest: `.env` points Debian's docker client (`tests.conformance.peers.DOCKER`) at it."""
    from tests.conformance.peers import DOCKER, Dockerd, PeerError

    if shutil.which("dockerd") is None or not os.path.exists(DOCKER):
        pytest.skip("dockerd and docker.io are installed by scripts/install-test-deps")
    try:
        d = Dockerd(tmp_path_factory.mktemp("buildkit"), busybox_tar)
    except PeerError as exc:
        pytest.fail(str(exc))
    try:
        subprocess.run([DOCKER, "tag", "debian:bookworm", "busybox:latest"], env={**os.environ, **d.env}, check=True,
                       capture_output=True)
        yield d
    finally:
        d.close()


def step_no(progress: str, name: str) -> int:
    """The `#N` of the step whose plain-progress title holds `name` (e.g. `[2/3] COPY a /a`)."""
    import re

    for m in re.finditer(r"^#(\d+) (.*)$", progress, re.M):
        if name in m.group(2):
            return int(m.group(1))
    raise AssertionError(f"no step {name!r} in:\n{progress}")


def cached(progress: str, name: str) -> bool:
    """Whether the step titled `name` shows CACHED in plain progress."""
    return f"#{step_no(progress, name)} CACHED" in progress


def processes(cmdline: str) -> list[int]:
    """The processes whose command line is `cmdline` (NUL-separated, as /proc has it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().decode(errors="replace") == cmdline:
                found.append(int(entry.name))
        except OSError:
            continue
    return found
