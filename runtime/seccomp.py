"""Seccomp filters as Docker applies them: a profile in Docker's JSON format (the default one is
`seccomp_default.json`, moby's default profile for amd64/arm64), resolved for the process's
capabilities and the machine's architecture as moby's `setupSeccomp` does (`includes`/`excludes`
of caps, arches and minKernel), then compiled by libseccomp's Python bindings.

    profile text --resolve(caps)--> OCI `linux.seccomp` (what runc gets: `oci_seccomp`)
                 --libseccomp-----> BPF program (cached by content under the run dir)
                 --load()---------> in the container's process, right before exec

libseccomp's own `load()` generates the program anew each time (~8 ms for three architectures),
so the program it exports is kept, and the process only hands it to the kernel (microseconds).
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

from runtime import _linux
from runtime.errors import SandboxError

try:
    from _sha256 import sha256  # CPython <= 3.11: hashlib's OpenSSL binding costs `pybuild run` ~3.5 ms
except ImportError:
    try:
        from _sha2 import sha256  # CPython >= 3.12
    except ImportError:
        from hashlib import sha256

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")
UNCONFINED = "unconfined"

# capability numbers by name (linux/capability.h)
CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
                "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
                "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
                "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
                "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
                "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
                "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")

# Go's architecture names (what a profile's includes/excludes name) and libseccomp's
_NATIVE = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm", "s390x": "s390x",
           "ppc64le": "ppc64le", "riscv64": "riscv64"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "x86": "SCMP_ARCH_X86",
              "arm": "SCMP_ARCH_ARM", "s390x": "SCMP_ARCH_S390X", "ppc64le": "SCMP_ARCH_PPC64LE",
              "riscv64": "SCMP_ARCH_RISCV64"}
_ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG")
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ")
_EPERM = 1
MAX_PROFILE_BYTES = 1 << 20

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def default_profile() -> str:
    return DEFAULT_PROFILE.read_text()


def read_profile(path: str) -> str:
    """The text of a `--security-opt seccomp=PATH` profile, checked; a SandboxError names the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise SandboxError(f"cannot read the seccomp profile {path}: {exc.strerror}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise SandboxError(f"the seccomp profile {path} is larger than {MAX_PROFILE_BYTES >> 20} MiB")
    text = data.decode("utf-8", errors="replace")
    _parse(text, path)
    return text


def check_profile(text: str, origin: str = "profile") -> str:
    """`text` when it is a valid profile in Docker's format (as the Engine API passes it inline);
    a SandboxError naming `origin` otherwise."""
    _parse(text, origin)
    return text


def _parse(text: str, origin: str) -> dict[str, Any]:
    """A profile as a dict after checking its shape; SandboxError naming `origin` otherwise."""
    def bad(why: str) -> SandboxError:
        return SandboxError(f"invalid seccomp profile {origin}: {why}")

    try:
        profile = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON ({exc})" if isinstance(exc, ValueError) else "nested too deeply") from None
    if not isinstance(profile, dict):
        raise bad("not a JSON object")
    if profile.get("defaultAction", "") not in _ACTIONS:
        raise bad(f"unknown defaultAction {profile.get('defaultAction')!r}")
    if profile.get("architectures") and profile.get("archMap"):
        raise bad("both 'architectures' and 'archMap' are specified, use either")
    calls = profile.get("syscalls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise bad("'syscalls' must be a list of objects")
    for i, call in enumerate(calls):
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise bad(f"syscalls[{i}] names no syscall")
        if call.get("action") not in _ACTIONS:
            raise bad(f"syscalls[{i}]: unknown action {call.get('action')!r}")
        for arg in call.get("args") or []:
            if not isinstance(arg, dict) or arg.get("op") not in _OPS or not isinstance(arg.get("index"), int) \
                    or not 0 <= arg["index"] < 6 or not isinstance(arg.get("value", 0), int):
                raise bad(f"syscalls[{i}]: bad argument filter {arg!r}")
    return profile


def _kernel_at_least(version: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:
        out = []
        for part in text.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return numbers(os.uname().release) >= numbers(version)


def oci_seccomp(text: str, caps: frozenset[int], origin: str = "profile") -> dict[str, Any]:
    """The runtime spec's `linux.seccomp` for a process holding `caps` on this machine: the rules
    whose includes hold and excludes do not, as moby's setupSeccomp resolves them (what runc loads)."""
    profile = _parse(text, origin)
    arch = _NATIVE.get(os.uname().machine, os.uname().machine)
    cap_names = {CAPABILITIES[c] for c in caps if c < len(CAPABILITIES)}
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == _SCMP_ARCH.get(arch):
            arches = [entry["architecture"], *(entry.get("subArchitectures") or [])]
    out["architectures"] = arches
    syscalls = []
    for call in profile.get("syscalls") or []:
        inc, exc = call.get("includes") or {}, call.get("excludes") or {}
        if arch in (exc.get("arches") or []) or cap_names & set(exc.get("caps") or []) \
                or (exc.get("minKernel") and _kernel_at_least(exc["minKernel"])):
            continue
        if (inc.get("arches") and arch not in inc["arches"]) or not set(inc.get("caps") or []) <= cap_names \
                or (inc.get("minKernel") and not _kernel_at_least(inc["minKernel"])):
            continue
        rule = {"names": call.get("names") or [call["name"]], "action": call["action"]}
        for key in ("errnoRet", "args"):
            if key in call:
                rule[key] = call[key]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def _bindings() -> Any:
    """libseccomp's Python module: importable, or Debian's python3-seccomp built for this Python."""
    try:
        import seccomp  # type: ignore[import-not-found]
        if hasattr(seccomp, "SyscallFilter"):  # not some directory named seccomp on sys.path
            return seccomp
    except ImportError:
        pass
    import importlib.machinery
    import importlib.util

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = "/usr/lib/python3/dist-packages/seccomp" + suffix
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("seccomp", path)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
    raise SandboxError("the seccomp filter needs libseccomp's Python bindings",
                       hint="apt-get install python3-seccomp, or run with --security-opt seccomp=unconfined")


def _action(sc: Any, name: str, errno: int | None) -> Any:
    if name == "SCMP_ACT_ERRNO":
        return sc.ERRNO(_EPERM if errno is None else errno)
    if name == "SCMP_ACT_TRACE":
        return sc.TRACE(_EPERM if errno is None else errno)
    return {"SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_KILL": sc.KILL, "SCMP_ACT_KILL_THREAD": sc.KILL,
            "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP, "SCMP_ACT_LOG": sc.LOG}[name]


def compile_bpf(spec: dict[str, Any]) -> bytes:
    """The BPF program libseccomp makes of an OCI `linux.seccomp`, as runc adds its rules: syscalls
    this libseccomp does not know are skipped, a rule whose action is the default one is left out,
    and conditions on one argument given more than once become one rule each (either matches)."""
    sc = _bindings()
    default_errno = spec.get("defaultErrnoRet")
    default = _action(sc, spec["defaultAction"], default_errno)
    f = sc.SyscallFilter(default)
    native = sc.system_arch()
    for name in spec.get("architectures") or []:
        arch = getattr(sc.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if arch is not None and int(arch) != native:
            try:
                f.add_arch(arch)
            except (OSError, RuntimeError, ValueError):
                pass  # an architecture this kernel or libseccomp cannot filter
    ops = {op: getattr(sc, op.removeprefix("SCMP_CMP_")) for op in _OPS}
    for call in spec["syscalls"]:
        errno = call.get("errnoRet")
        if call["action"] == spec["defaultAction"] and (call["action"] != "SCMP_ACT_ERRNO"
                                                        or (errno or _EPERM) == (default_errno or _EPERM)):
            continue
        action = _action(sc, call["action"], errno)
        conds = [sc.Arg(a["index"], ops[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                 for a in call.get("args") or []]
        indexes = [a["index"] for a in call.get("args") or []]
        groups = [[c] for c in conds] if len(set(indexes)) < len(indexes) else [conds]
        for name in call["names"]:
            try:
                if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:
                    continue  # unknown to this libseccomp (runc skips it too)
            except (ValueError, OSError, RuntimeError):
                continue
            for group in groups:
                try:
                    f.add_rule(action, name, *group)
                except (ValueError, OSError, RuntimeError) as exc:
                    raise SandboxError(f"the seccomp rule for {name} was refused by libseccomp: {exc}") from None
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        return tmp.read()


def program(text: str, caps: frozenset[int], cache_dir: Path | None = None, origin: str = "profile") -> bytes:
    """The BPF program for profile `text` and `caps`, from `cache_dir` when made before (the key
    covers the profile, the capabilities, the kernel and the machine)."""
    key = sha256(json.dumps([text, sorted(caps), os.uname().release, os.uname().machine, 1]).encode()).hexdigest()
    if key in _memo:
        return _memo[key]
    path = cache_dir / f"{key}.bpf" if cache_dir is not None else None
    data = b""
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError:
            pass
    if not data or len(data) % 8:
        data = compile_bpf(oci_seccomp(text, caps, origin))
        if path is not None:
            try:
                path.parent.mkdir(mode=0o700, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            except OSError:
                pass  # a cache only
    _memo[key] = data
    return data


_memo: dict[str, bytes] = {}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(bpf: bytes) -> None:
    """Install `bpf` (a program from `program`) on this thread; no_new_privs must be set already.
    Call it last before exec: every later syscall of the process is filtered."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    _linux.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))
