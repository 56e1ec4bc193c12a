"""Rootless fixtures: real unprivileged users and pybuild run as them (runuser, no sudo inside).

`pbrootless` has a sub-id range in /etc/subuid and /etc/subgid; `pbnosubid` has none. pybuild runs
on Debian's python3 in a cached venv, on a copy of this checkout every user can read
(`fixtures/rootless_user.py`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from rootless_user import copy_code, ensure_user, venv  # fixtures/ (on sys.path through tests/conftest.py)

USER = "pbrootless"
NOSUB_USER = "pbnosubid"

class Runner:
    """pybuild (or any command) as one unprivileged user."""

    def __init__(self, user: pwd.struct_passwd, venv: Path, code: Path) -> None:
        self.user, self.venv, self.code = user, venv, code
        self.name, self.uid, self.gid, self.home = user.pw_name, user.pw_uid, user.pw_gid, Path(user.pw_dir)

    def env(self, extra: dict[str, str] | None = None) -> list[str]:
        base = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(self.code),
                "PYTHONDONTWRITEBYTECODE": "1"}
        return [f"{k}={v}" for k, v in {**base, **(extra or {})}.items()]

    def run(self, *argv: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`argv` as the user, with a clean environment (plus `env`)."""
        proc = subprocess.run(["runuser", "-u", self.name, "--", "env", "-i", *self.env(env), *argv],
                              capture_output=True, text=True, cwd=cwd or self.home, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} as {self.name} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def pybuild(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin/python"), "-m", "builder", *args, **kw)  # type: ignore[arg-type]

    def workdir(self) -> Path:
        """A fresh directory the user owns (under /tmp: readable by the user, unlike pytest's)."""
        d = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        os.chown(d, self.uid, self.gid)
        return d

    def give(self, path: Path) -> Path:
        """Make `path` (a tree root made by the test) the user's."""
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.lchown(os.path.join(dirpath, name), self.uid, self.gid)
        os.chown(path, self.uid, self.gid)
        return path


@pytest.fixture(scope="session")
def rootless_code() -> Iterator[Path]:
    """This checkout's code, copied where every user can read it."""
    d = Path(tempfile.mkdtemp(prefix="pybuild-code-"))
    copy_code(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def user(rootless_code: Path) -> Runner:
    """The unprivileged user with sub-ids."""
    if os.geteuid() != 0:
        pytest.skip("creates users: run the suite as root")
    return Runner(ensure_user(USER, subids=True), venv(), rootless_code)


@pytest.fixture(scope="session")
def nosub_user(rootless_code: Path) -> Runner:
    """An unprivileged user without any sub-id range."""
    if os.geteuid() != 0:
        pytest.skip("creates users: run the suite as root")
    return Runner(ensure_user(NOSUB_USER, subids=False), venv(), rootless_code)


@pytest.fixture(scope="module")
def user_store(user: Runner, busybox_tar: Path) -> Iterator[dict[str, str]]:
    """A store of the user's with busybox:latest imported; returns the env pointing at it."""
    work = user.workdir()
    tar = work / "busybox.tar"
    shutil.copy(busybox_tar, tar)
    user.give(tar)
    env = {"PYBUILD_ROOT": str(work / "store")}
    user.pybuild("import", str(tar), "busybox:latest", env=env)
    user.pybuild("import", str(user.code / "fixtures/rootless/caps.tar"), "caps:1", env=env)  # a file capability
    yield env
    shutil.rmtree(work, ignore_errors=True)
