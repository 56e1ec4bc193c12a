"""runtime.enter: a process run inside a running container sees what the container's own processes
see (its hostname, pid 1, mounts, cgroup and limits), as the container's user or another, and is
killed when it outlives its timeout."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from runtime.enter import run_in
from runtime.spec import ProcessSpec
from tests.conftest import pybuild, requires_root

pytestmark = requires_root


@pytest.fixture(scope="module")
def container(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A detached busybox container with a memory limit and a file of its own: (id, init pid)."""
    env = {"PYBUILD_ROOT": str(tmp_path_factory.mktemp("enter-store"))}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    cid = pybuild("run", "-d", "-m", "64m", "-e", "MARK=from-run", "busybox", "sh", "-c",
                  "echo inside > /tmp/mark; exec sleep 300", env=env).stdout.strip()
    try:
        state = json.loads((Path(env["PYBUILD_ROOT"]) / "containers" / cid / "state.json").read_text())
        yield cid, state["init_pid"]
    finally:
        pybuild("rm", "-f", cid, env=env)


def _sh(script: str, **kw: object) -> ProcessSpec:
    return ProcessSpec(("sh", "-c", script), **kw)  # type: ignore[arg-type]


def test_it_runs_in_the_containers_namespaces_and_root(container: tuple[str, int]) -> None:
    cid, init = container
    deadline = time.monotonic() + 10
    while run_in(init, _sh("cat /tmp/mark")).output != b"inside\n":  # the container's own file system
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = run_in(init, _sh("hostname; cat /proc/1/cmdline; echo; echo $$ $MARK; exit 7", env=(("MARK", "x"),)))
    hostname, init_cmd, pids = result.output.decode().splitlines()
    assert result.code == 7 and hostname == cid[:12] and init_cmd.startswith("pybuild-init")
    assert int(pids.split()[0]) < 100 and pids.split()[1] == "x"  # a pid of the container's namespace; its env
    assert run_in(init, ProcessSpec(("id", "-u"), user="nobody")).output == b"65534\n"
    assert run_in(init, ProcessSpec(("no-such-tool",))).code == 127


def test_it_counts_in_the_containers_cgroup(container: tuple[str, int]) -> None:
    _, init = container
    seen: list[str] = []
    done = threading.Event()

    def look() -> None:  # from the host, while the entered process runs
        while not done.is_set():
            for p in Path("/proc").iterdir():
                try:
                    if p.name.isdigit() and (p / "cmdline").read_bytes() == b"sleep\x003.5\x00":
                        seen.append((p / "cgroup").read_text())
                        return
                except OSError:
                    continue
            time.sleep(0.05)

    watcher = threading.Thread(target=look)
    watcher.start()
    result = run_in(init, ProcessSpec(("sleep", "3.5")), timeout=10)
    done.set()
    watcher.join()
    init_groups = Path(f"/proc/{init}/cgroup").read_text()
    assert result.code == 0 and seen, "the entered process was not seen"
    memory = [ln for ln in init_groups.splitlines() if "/pybuild/" in ln]
    assert memory and all(ln in seen[0].splitlines() for ln in memory), (seen[0], init_groups)


def test_a_process_past_its_timeout_is_killed(container: tuple[str, int]) -> None:
    _, init = container
    t0 = time.monotonic()
    result = run_in(init, _sh("echo started; exec sleep 60"), timeout=1)
    assert result.timed_out and result.code == -1 and result.output == b"started\n"
    assert time.monotonic() - t0 < 10
    assert b"sleep 60" not in run_in(init, ProcessSpec(("ps",))).output  # not left running in the container
    long = run_in(init, _sh("head -c 10000 /dev/zero | tr '\\0' a"), limit=100)
    assert long.output == b"a" * 100 + b"..."  # the output is cut at the limit, as Docker's health log
