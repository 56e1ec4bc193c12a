"""Benchmark: what the seccomp filter costs per process start (issue 12: < 5 ms).

    python3 bench/seccomp_cost.py [--runs 30]

1. `LinuxExecutor.run` of `true` on a busybox rootfs with Docker's default profile and with
   `seccomp=unconfined`, alternating, medians: the difference is the filter's cost per container.
2. The load itself in a forked child: our `seccomp.load` of the cached program against libseccomp's
   own `SyscallFilter.load()` of the same rules (what a runtime calling libseccomp per process
   pays: it generates the program each time), the peer measured in the same run.
3. The one-off compile of a profile for a capability set (cached after, in memory and on disk).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "fixtures")]

import baseimages  # noqa: E402
from runtime import seccomp  # noqa: E402
from runtime.executor import DEFAULT_CAPS, LinuxExecutor  # noqa: E402
from runtime.spec import NetworkMode, ProcessSpec, RootfsSpec  # noqa: E402


def _in_child(fn) -> float:  # type: ignore[no-untyped-def]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import ctypes
        ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # no_new_privs, as in the container
        t = time.perf_counter()
        fn()
        os.write(w, str(time.perf_counter() - t).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    return float(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    text = seccomp.default_profile()

    t = time.perf_counter()
    bpf = seccomp.compile_bpf(seccomp.oci_seccomp(text, DEFAULT_CAPS))
    compile_ms = (time.perf_counter() - t) * 1000

    spec = seccomp.oci_seccomp(text, DEFAULT_CAPS)
    sc = seccomp._bindings()

    def libseccomp_load() -> None:  # the peer: the filter built and loaded by libseccomp in the process
        f = sc.SyscallFilter(sc.ERRNO(1))
        for name in ("SCMP_ARCH_X86", "SCMP_ARCH_X32"):
            f.add_arch(getattr(sc.Arch, name.removeprefix("SCMP_ARCH_")))
        for call in spec["syscalls"]:
            if call["action"] == "SCMP_ACT_ALLOW" and not call.get("args"):
                for n in call["names"]:
                    if sc.resolve_syscall(sc.Arch.NATIVE, n) >= 0:
                        f.add_rule(sc.ALLOW, n)
        f.load()

    def rules_only() -> None:
        f = sc.SyscallFilter(sc.ERRNO(1))
        for name in ("SCMP_ARCH_X86", "SCMP_ARCH_X32"):
            f.add_arch(getattr(sc.Arch, name.removeprefix("SCMP_ARCH_")))
        for call in spec["syscalls"]:
            if call["action"] == "SCMP_ACT_ALLOW" and not call.get("args"):
                for n in call["names"]:
                    if sc.resolve_syscall(sc.Arch.NATIVE, n) >= 0:
                        f.add_rule(sc.ALLOW, n)

    ours = statistics.median(_in_child(lambda: seccomp.load(bpf)) for _ in range(args.runs)) * 1000
    peer = statistics.median(_in_child(libseccomp_load) - _in_child(rules_only) for _ in range(args.runs)) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        lower = base / "lower"
        lower.mkdir()
        with tarfile.open(baseimages.busybox_rootfs_tar(base / "busybox.tar")) as tar:
            tar.extractall(lower, filter="fully_trusted")
        ex = LinuxExecutor()
        times: dict[str, list[float]] = {"": [], "unconfined": []}
        for i in range(args.runs + 1):
            for mode in times:
                upper, work = base / f"u{i}{mode}", base / f"w{i}{mode}"
                upper.mkdir()
                work.mkdir()
                t = time.perf_counter()
                st = ex.run(ProcessSpec(("true",), seccomp=mode), RootfsSpec((lower,), upper, work),
                            network=NetworkMode.NONE, stdout=lambda _: None, stderr=lambda _: None)
                if st.code != 0:
                    raise SystemExit(f"true exited {st.code}")
                if i:
                    times[mode].append(time.perf_counter() - t)
    confined = statistics.median(times[""]) * 1000
    free = statistics.median(times["unconfined"]) * 1000
    print(f"container start, Docker's default profile: {confined:7.2f} ms   unconfined: {free:7.2f} ms   "
          f"filter cost: {confined - free:+.2f} ms (target < 5 ms)")
    print(f"loading the filter in the process: ours {ours:.3f} ms (cached program)   "
          f"libseccomp load() per process: {peer:.3f} ms   ratio {peer / ours:.0f}x")
    print(f"one-off compile of the profile for a capability set: {compile_ms:.1f} ms ({len(bpf) // 8} instructions)")


if __name__ == "__main__":
    main()
