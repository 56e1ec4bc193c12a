"""Issue 12, items 1-3 through the CLI: the seccomp filter in RUN steps and `pybuild run`, its
opt-outs, and the mounts Docker refuses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import pybuild, requires_root

pytestmark = requires_root


def _build(store: dict[str, str], tmp_path: Path, dockerfile: str, *args: str):  # type: ignore[no-untyped-def]
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return pybuild("build", "--no-cache", "--progress=plain", *args, str(ctx), env=store, check=False)


def test_run_steps_are_filtered_and_insecure_ones_are_not(store: dict[str, str], tmp_path: Path) -> None:
    proc = _build(store, tmp_path, "FROM busybox\nRUN grep ^Seccomp: /proc/self/status\n"
                                   "RUN --security=insecure grep ^Seccomp: /proc/self/status\n",
                  "--allow", "security.insecure")
    assert proc.returncode == 0, proc.stderr
    assert "Seccomp:\t2" in proc.stderr and "Seccomp:\t0" in proc.stderr
    proc = _build(store, tmp_path, "FROM busybox\nRUN unshare -U true\n")
    assert proc.returncode == 1 and "Operation not permitted" in proc.stderr


def test_run_security_opt(store: dict[str, str], tmp_path: Path) -> None:
    run = ("run", "--rm", "--network", "none")
    assert pybuild(*run, "busybox", "grep", "^Seccomp:", "/proc/self/status", env=store).stdout == "Seccomp:\t2\n"
    out = pybuild(*run, "--security-opt", "seccomp=unconfined", "busybox", "grep", "^Seccomp:", "/proc/self/status",
                  env=store).stdout
    assert out == "Seccomp:\t0\n"
    # a profile of one's own, in Docker's format: mkdir refused with EACCES, everything else allowed
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    proc = pybuild(*run, "--security-opt", f"seccomp={profile}", "busybox", "sh", "-c", "mkdir /x; touch /y && echo ok",
                   env=store, check=False)
    assert "Permission denied" in proc.stderr and proc.stdout == "ok\n"
    profile.write_text('{"defaultAction": 1}')
    proc = pybuild(*run, "--security-opt", f"seccomp={profile}", "busybox", "true", env=store, check=False)
    assert proc.returncode == 125 and proc.stderr.startswith(f"invalid seccomp profile {profile}: ")
    assert "Traceback" not in proc.stderr
    proc = pybuild(*run, "--security-opt", "apparmor=x", "busybox", "true", env=store, check=False)
    assert proc.returncode == 125 and "invalid --security-opt 'apparmor=x'" in proc.stderr


def test_root_is_refused_as_a_mount_destination(store: dict[str, str], tmp_path: Path) -> None:
    for spec in ("/:/", f"{tmp_path}:/", "/://", "/"):
        proc = pybuild("run", "--rm", "--network", "none", "-v", spec, "busybox", "ls", "/", env=store, check=False)
        assert proc.returncode == 125, (spec, proc.stdout)
        assert "destination can't be '/'" in proc.stderr and proc.stdout == "", spec
