"""The supervisor of one detached container (what conmon is to podman): started in its own session
by `pybuild run -d`, it runs the container with output to `output.log`, records its exit in
`state.json`, and removes the container when it was started with `--rm`.

    python -m runtime.supervisor <container dir>
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from runtime.containers import Container
from runtime.errors import SandboxError


def main(argv: list[str]) -> int:
    container = Container(Path(argv[0]))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(container.state().init_pid or os.getpid(), signal.SIGKILL))
    if container.config.process.stdin:  # -i: stdin stays open with nothing written to it, as docker run -di
        stdin, _keep_open = os.pipe()
    else:
        stdin = os.open(os.devnull, os.O_RDONLY)
    try:
        status = container.run(stdout=1, stderr=2, stdin=stdin)
        code = status.code
    except SandboxError as exc:
        sys.stderr.write(f"pybuild: {exc.render()}\n")
        code = 125
    if container.config.auto_remove:
        shutil.rmtree(container.path, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
