"""Fixtures of the security tests: the runtime's busybox runner and a static syscall probe."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.runtime.conftest import busybox_dir, run_in  # noqa: F401 - fixtures used here too


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layer holding /probe, fixtures/seccomp/probe.c built with `gcc -static` (no libc in busybox)."""
    if shutil.which("gcc") is None:
        pytest.skip("not installed: gcc")
    root = tmp_path_factory.mktemp("probe-layer")
    subprocess.run(["gcc", "-static", "-O1", "-o", str(root / "probe"), str(FIXTURES / "syscall-probe" / "probe.c")],
                   check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def store(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store shared by one module, with busybox:latest imported; returns the env."""
    from tests.conftest import pybuild

    env = {"PYBUILD_ROOT": str(tmp_path_factory.mktemp("security-store"))}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    return env
