"""Run one more process inside a running container and collect its output, as Docker's healthcheck
runs its test: `runtime.nsexec` does the entering (cgroups, namespaces, root, the process's user,
capabilities, no_new_privs and seccomp); this keeps stdout and stderr in one buffer cut at `limit`
bytes (`...` marks a cut) and kills the process (its process group) past `timeout`.

    run_in(init_pid, process, timeout=None, limit=4096) -> Entered(code, output, timed_out)
"""

from __future__ import annotations

import os
import signal
import threading
from typing import NamedTuple

from runtime.errors import SandboxError
from runtime.spec import ProcessSpec

__all__ = ["Entered", "run_in"]


class Entered(NamedTuple):
    code: int  # the exit code (128+N on signal N); -1 when it timed out
    output: bytes  # stdout and stderr as written, cut at the limit
    timed_out: bool = False


def run_in(init_pid: int, process: ProcessSpec, timeout: float | None = None, limit: int = 4096) -> Entered:
    """Run `process` in the container whose init has host pid `init_pid`; its output is kept up
    to `limit` bytes. Raises OSError when the container is gone; a process that cannot start is
    exit 127 (no such program) or 126 with the reason as its output."""
    from runtime.nsexec import run_in as enter

    os.stat(f"/proc/{init_pid}/ns/mnt")  # the container is gone: OSError, as callers expect
    kept = bytearray()
    cut = False
    lock = threading.Lock()

    def sink(data: bytes) -> None:
        nonlocal cut
        with lock:
            room = limit - len(kept)
            kept.extend(data[:max(room, 0)])
            cut = cut or len(data) > room

    pid = 0
    expired = threading.Event()

    def kill() -> None:
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)  # the process leads its own session and group
            except ProcessLookupError:
                pass

    def started(p: int) -> None:
        nonlocal pid
        pid = p
        if expired.is_set():
            kill()

    def expire() -> None:
        expired.set()
        kill()

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        status = enter(init_pid, process, stdout=sink, stderr=sink, on_start=started)
    except SandboxError as exc:
        if not os.path.exists(f"/proc/{init_pid}"):
            raise OSError(f"the container (init pid {init_pid}) is gone") from None
        return Entered(127 if "executable file not found" in exc.message else 126, f"{exc.message}\n".encode())
    finally:
        if timer is not None:
            timer.cancel()
    if expired.is_set():
        return Entered(-1, bytes(kept), True)
    return Entered(status.code, bytes(kept) + (b"..." if cut else b""))
