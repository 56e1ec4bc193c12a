"""Fixtures shared by the end-to-end build tests."""

from __future__ import annotations

from pathlib import Path

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
