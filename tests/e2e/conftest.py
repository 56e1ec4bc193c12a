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
