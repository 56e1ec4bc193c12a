"""Shared fixtures: a private store per test, offline base images, the CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(FIXTURES))

import baseimages  # noqa: E402

# the registry fixtures (docker-registry on 127.0.0.1, token server, TLS, fault proxy): registry, basic_registry,
# tls_registry, token_registry, pki, fault_proxy, docker_config
pytest_plugins = ["tests.builder.registry_server"]

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, overlayfs, device nodes)")


def requires_tool(*names: str) -> pytest.MarkDecorator:
    """Skip when a peer tool is missing (scripts/install-test-deps installs them all)."""
    missing = [n for n in names if shutil.which(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


@pytest.fixture
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, private pybuild store for one test (PYBUILD_ROOT)."""
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("PYBUILD_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs tarball made from Debian's busybox-static."""
    return baseimages.busybox_rootfs_tar(tmp_path_factory.mktemp("base") / "busybox.tar")


@pytest.fixture(scope="session")
def debian_tar() -> Path:
    """The debootstrapped bookworm minbase rootfs (made once per machine, kept between runs); the
    tests that need it skip only when no Debian mirror answers and none is cached."""
    if os.geteuid() != 0:
        pytest.skip("debian:bookworm needs root (debootstrap)")
    try:
        return baseimages.cached_debian_tar()
    except baseimages.NoMirror as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def busybox_arm64_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An arm64 busybox rootfs tarball from Debian's busybox-static:arm64 (downloaded once, cached)."""
    return baseimages.busybox_rootfs_tar(tmp_path_factory.mktemp("base") / "busybox-arm64.tar", "arm64")


@pytest.fixture(scope="session")
def busybox_armv7_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An arm/v7 busybox rootfs tarball from Debian's busybox-static:armhf (downloaded once, cached)."""
    return baseimages.busybox_rootfs_tar(tmp_path_factory.mktemp("base") / "busybox-armhf.tar", "armhf")


def pybuild(*args: str, check: bool = True, input: bytes | None = None, env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `pybuild` CLI in a subprocess (as a user would) and return the finished process."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # this checkout, from any cwd
    proc = subprocess.run(
        [sys.executable, "-m", "builder", *args],
        input=input.decode() if input is not None else None,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path, **(env or {})}, cwd=cwd, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"pybuild {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc
