"""The supervisor of one detached container (what conmon is to podman): started in its own session
by `pybuild run -d`, it runs the container with its output in `log.json` (stdout and stderr apart,
each line timed; its own errors go to `output.log`), records its exit in `state.json`, runs the
image's HEALTHCHECK (`runtime.health`) while it runs, and removes the container when it was started
with `--rm`.

    python -m runtime.supervisor <container dir> [<fd>]

With `fd` (a pipe's read end from `Container.start_detached`), an --rm container is removed only
after the starter closed the other end, i.e. has read the container's state. A FIFO `stdin` in the
container's directory (made by an attaching client, `pybuild serve`) is the container's stdin.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
from pathlib import Path

from runtime.containers import Container, LogWriter
from runtime.health import start
from runtime.errors import SandboxError


def main(argv: list[str]) -> int:
    container = Container(Path(argv[0]))
    starter = int(argv[1]) if len(argv) > 1 else None
    if starter is not None:
        os.set_inheritable(starter, False)  # the container's processes never see it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(container.state().init_pid or os.getpid(), signal.SIGKILL))
    fifo = container.path / "stdin"
    tty = container.config.process.tty
    if container.config.process.stdin and fifo.exists():  # an attached client's stdin (`pybuild serve`)
        if tty:  # a terminal's stdin stays open when its client detaches or leaves (dockerd's rule): a writer of our own
            stdin = os.open(fifo, os.O_RDWR)
        else:  # its writer holds it open: EOF when the client ends (echo x | docker run -i)
            stdin = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(stdin, True)
        fifo.unlink()  # one attach, one start: a restart without one is the -di case below
    elif container.config.process.stdin:  # -i: stdin stays open with nothing written to it, as docker run -di
        stdin, _keep_open = os.pipe()
    else:
        stdin = os.open(os.devnull, os.O_RDONLY)
    log = LogWriter(container.json_log_path, immediate=tty)  # what logs and attach read
    stop_health = start(container)
    try:
        status = container.run(stdout=log.sink("stdout", None), stderr=2 if tty else log.sink("stderr", None),
                               stdin=stdin)
        code = status.code
    except SandboxError as exc:
        sys.stderr.write(f"pybuild: {exc.render()}\n")
        code = 125
    finally:
        stop_health.set()
        log.close()
    if container.config.auto_remove:
        if starter is not None:
            select.select([starter], [], [], 60)  # EOF once `pybuild run -d` has seen the state (or died)
        shutil.rmtree(container.path, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
