"""Issue 12, item 1: every container process runs under a seccomp filter equal to Docker's default
profile; unconfined only when asked (`--security-opt seccomp=unconfined`, `RUN --security=insecure`)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from pathlib import Path

import pytest

from runtime import seccomp
from runtime.executor import DEFAULT_CAPS
from tests.conftest import requires_root, requires_tool

pytestmark = requires_root

_libc = ctypes.CDLL(None, use_errno=True)
SYS_add_key, SYS_keyctl = 248, 250
KEYCTL_JOIN_SESSION_KEYRING = 1
KEY_SPEC_SESSION_KEYRING = -3


def _verdicts(text: str) -> dict[str, int]:
    return {name: int(err) for name, err in (line.split() for line in text.splitlines())}


def test_status_shows_filter_mode(run_in) -> None:
    assert run_in("grep", "^Seccomp:", "/proc/self/status").out.split() == ["Seccomp:", "2"]
    assert run_in("grep", "^Seccomp:", "/proc/self/status", seccomp="unconfined").out.split() == ["Seccomp:", "0"]


def test_dockers_blocked_calls_are_blocked(run_in, busybox_dir: Path, probe_dir: Path) -> None:
    confined = _verdicts(run_in("/probe", "table", lower=(busybox_dir, probe_dir)).out)
    for name in ("keyctl", "add_key", "request_key", "unshare_user", "unshare_ns", "io_uring_setup",
                 "personality_read_implies_exec", "clone_newuser", "clone_newns", "socket_alg", "socket_vsock",
                 "bpf", "mount", "setns", "open_by_handle_at", "userfaultfd"):
        assert confined[name] == 1, (name, confined[name])  # EPERM, the profile's default errno
    assert confined["clone3"] == 38  # ENOSYS: glibc then falls back to clone
    for name in ("getpid", "personality_query", "personality_linux", "clone_fork", "socket_inet", "arch_prctl"):
        assert confined[name] == 0, (name, confined[name])
    # the same calls without the filter: the verdicts above are the filter's, not the kernel's
    free = _verdicts(run_in("/probe", "table", lower=(busybox_dir, probe_dir), seccomp="unconfined").out)
    for name in ("keyctl", "add_key", "io_uring_setup", "personality_read_implies_exec", "unshare_user"):
        assert free[name] != 1, (name, free[name])


def test_unshare_user_then_mount_is_refused(run_in) -> None:
    r = run_in("sh", "-c", "unshare -U -r sh -c 'mount -t tmpfs none /tmp && echo mounted'")
    assert r.code != 0 and "mounted" not in r.out
    assert "Operation not permitted" in r.err


def test_session_keyring_is_not_readable(run_in, busybox_dir: Path, probe_dir: Path) -> None:
    """A key planted in this test's own (new, anonymous) session keyring, which every process
    forked from here inherits: a confined container must not read it; unconfined, it does."""
    if _libc.syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        pytest.skip(f"no keyrings: {os.strerror(ctypes.get_errno())}")
    secret = os.urandom(8).hex().encode()
    if _libc.syscall(SYS_add_key, b"user", b"pybuild-probe", secret, len(secret), KEY_SPEC_SESSION_KEYRING) < 0:
        pytest.skip(f"add_key: {os.strerror(ctypes.get_errno())}")
    lower = (busybox_dir, probe_dir)
    r = run_in("/probe", "keyget", "pybuild-probe", lower=lower)
    assert (r.code, r.out) == (1, "search: Operation not permitted\n")
    r = run_in("/probe", "keyget", "pybuild-probe", lower=lower, seccomp="unconfined")
    assert r.out == f"secret: {secret.decode()}\n"  # the key is there: the filter is what stops the read


@requires_tool("runc")
def test_verdicts_equal_runc_with_the_exported_profile(run_in, busybox_dir: Path, probe_dir: Path,
                                                       tmp_path: Path) -> None:
    """The probe's table under pybuild and under runc given `oci_seccomp()` of the same profile
    and Docker's default capabilities: libseccomp via runc and our loader agree on every call."""
    ours = run_in("/probe", "table", lower=(busybox_dir, probe_dir)).out
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    caps = [seccomp.CAPABILITIES[c] for c in sorted(DEFAULT_CAPS)]
    config["process"].update(args=["/probe", "table"], terminal=False,
                             capabilities={k: caps for k in ("bounding", "effective", "permitted")})
    config["root"] = {"path": str(busybox_dir), "readonly": True}
    config["mounts"].append({"destination": "/probe", "type": "bind", "source": str(probe_dir / "probe"),
                             "options": ["bind", "ro"]})
    config["linux"]["seccomp"] = seccomp.oci_seccomp(seccomp.default_profile(), DEFAULT_CAPS)
    (bundle / "config.json").write_text(json.dumps(config))
    name = f"pybuild-seccomp-{os.getpid()}"
    try:
        theirs = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "-b", str(bundle), name],
                                capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["runc", "--root", str(tmp_path / "runc"), "delete", "-f", name], capture_output=True)
    assert theirs.returncode == 0, theirs.stderr
    mine, runc = _verdicts(ours), _verdicts(theirs.stdout)
    assert len(mine) >= 55
    assert mine == runc, {k: (mine[k], runc.get(k)) for k in mine if mine[k] != runc.get(k)}


def test_profile_resolution_follows_capabilities() -> None:
    """Capability-conditional rules as moby resolves them: CAP_SYS_ADMIN brings mount/unshare and
    drops the clone flag filter and clone3's ENOSYS; CAP_SYS_PTRACE brings kcmp."""
    def names(caps: frozenset[int]) -> dict[str, list]:
        out: dict[str, list] = {}
        for rule in seccomp.oci_seccomp(seccomp.default_profile(), caps)["syscalls"]:
            for n in rule["names"]:
                out.setdefault(n, []).append((rule["action"], rule.get("args")))
        return out

    default = names(DEFAULT_CAPS)
    admin = names(DEFAULT_CAPS | {21, 19})
    assert "mount" not in default and "unshare" not in default and "kcmp" not in default
    assert default["clone"][0][1][0]["op"] == "SCMP_CMP_MASKED_EQ" and default["clone3"][0][0] == "SCMP_ACT_ERRNO"
    assert admin["mount"] == admin["unshare"] == admin["clone"] == admin["clone3"] == [("SCMP_ACT_ALLOW", None)]
    assert "kcmp" in admin


def test_a_profile_that_is_not_valid_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    for text, why in (("{", "not JSON"), ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown defaultAction"),
                      ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "X"}]}',
                       "unknown action"), ("[" * 100000, "nested too deeply")):
        bad.write_text(text)
        with pytest.raises(seccomp.SandboxError, match=why):
            seccomp.read_profile(str(bad))
