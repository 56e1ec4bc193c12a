"""Runtime fixtures: an unpacked busybox rootfs (one per session) and a helper that runs a command."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Callable

import pytest

from runtime.executor import LinuxExecutor
from runtime.spec import ExitStatus, Limits, Mount, NetworkMode, ProcessSpec, RootfsSpec


@pytest.fixture(scope="session")
def busybox_dir(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs unpacked as one read-only lower dir."""
    root = tmp_path_factory.mktemp("busybox-rootfs")
    with tarfile.open(busybox_tar) as tar:
        tar.extractall(root, filter="fully_trusted")
    return root


class Result:
    def __init__(self, status: ExitStatus, out: bytes, err: bytes, upper: Path) -> None:
        self.status, self.code, self.upper = status, status.code, upper
        self.out, self.err = out.decode(errors="replace"), err.decode(errors="replace")


Runner = Callable[..., Result]


@pytest.fixture
def run_in(busybox_dir: Path, tmp_path: Path) -> Runner:
    """run_in("sh", "-c", "...", user=..., network=..., limits=..., lower=..., mounts=...) -> Result."""
    counter = iter(range(1000))

    def run(*argv: str, user: str = "", cwd: str = "/", env: dict[str, str] | None = None,
            network: NetworkMode = NetworkMode.NONE, limits: Limits = Limits(), mounts: tuple[Mount, ...] = (),
            lower: tuple[Path, ...] | None = None, hostname: str = "", readonly: bool = False,
            seccomp: str = "", nice: int = 0) -> Result:
        n = next(counter)
        upper, work = tmp_path / f"upper{n}", tmp_path / f"work{n}"
        upper.mkdir()
        work.mkdir()
        out: list[bytes] = []
        err: list[bytes] = []
        status = LinuxExecutor().run(
            ProcessSpec(argv=argv, env=tuple((env or {}).items()), user=user, cwd=cwd, hostname=hostname,
                        seccomp=seccomp, nice=nice),
            RootfsSpec(lower=lower if lower is not None else (busybox_dir,), upper=upper, work=work, readonly=readonly),
            mounts, network, limits, stdout=out.append, stderr=err.append)
        return Result(status, b"".join(out), b"".join(err), upper)

    return run
