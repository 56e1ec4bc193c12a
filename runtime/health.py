"""An image's HEALTHCHECK, run as Docker's daemon runs it (moby daemon/health.go), by the supervisor
of a detached container: every interval the test runs inside the container (`runtime.enter`);
exit 0 is healthy, anything else a failure, and `retries` failures in a row make it unhealthy;
failures within the start period do not count until the first success. Its state is the
container's `health.json`, Docker's State.Health:

    {"Status": "starting" | "healthy" | "unhealthy", "FailingStreak": 2,
     "Log": [{"Start": "...Z", "End": "...Z", "ExitCode": 1, "Output": "..."}]}   (the last 5 probes)

    test_argv(healthcheck, shell) -> argv | None        None: no check (none, or NONE)
    start(container) -> threading.Event                 probes from a thread until the event is set
    read(container_dir) -> dict | None
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from runtime import durations
from runtime.spec import ProcessSpec

__all__ = ["FILE", "monitor", "read", "start", "test_argv"]

FILE = "health.json"
DEFAULT_INTERVAL = DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096


def test_argv(healthcheck: dict[str, Any] | None, shell: list[str] | None = None) -> list[str] | None:
    """The command a healthcheck runs: `CMD` as given, `CMD-SHELL` through the image's shell
    (default `/bin/sh -c`); None for no healthcheck or `NONE`."""
    test = list((healthcheck or {}).get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return test[1:] or None
    if test[0] == "CMD-SHELL":
        return [*(shell or ["/bin/sh", "-c"]), " ".join(test[1:])]
    return None


def _seconds(ns: Any, default: float) -> float:
    return int(ns) / 1e9 if ns else default


def _stamp(ns: int) -> str:
    """Go's RFC 3339 with nanoseconds, as Docker writes times (trailing zeros dropped)."""
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (f".{frac}" if frac else "") + "Z"


def read(container_dir: Path) -> dict[str, Any] | None:
    """The container's State.Health, or None when it has no healthcheck running or run."""
    try:
        return json.loads((container_dir / FILE).read_text())
    except (OSError, ValueError):
        return None


def _write(container_dir: Path, health: dict[str, Any]) -> None:
    tmp = container_dir / f".{FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(health))
        os.replace(tmp, container_dir / FILE)
    except FileNotFoundError:  # the container was removed meanwhile
        pass


class _Container(Protocol):  # runtime.containers.Container, which imports this module
    path: Path
    config: Any

    def state(self) -> Any: ...


def start(container: _Container) -> threading.Event:
    """Probe `container`'s healthcheck (if it has one) from a daemon thread of this process (its
    supervisor, or the `pybuild run` it runs in) until the returned event is set."""
    stop = threading.Event()
    hc = container.config.healthcheck
    if hc and hc.get("Argv"):
        test = container.config.process._replace(argv=tuple(hc["Argv"]), tty=False, stdin=False)
        threading.Thread(target=monitor, args=(container.path, test, hc, time.time(),
                                               lambda: container.state().init_pid, stop),
                         name="healthcheck", daemon=True).start()
    return stop


def monitor(container_dir: Path, process: ProcessSpec, healthcheck: dict[str, Any], started: float,
            init_pid: Any, stop: threading.Event) -> None:
    """Probe until `stop` is set. `process` is the test's (argv, env, user, cwd); `started` the
    container's start (time.time()); `init_pid()` the container's init pid (0: not running)."""
    from runtime.enter import run_in

    interval = _seconds(healthcheck.get("Interval"), DEFAULT_INTERVAL)
    timeout = _seconds(healthcheck.get("Timeout"), DEFAULT_TIMEOUT)
    start_period = _seconds(healthcheck.get("StartPeriod"), 0.0)
    start_interval = _seconds(healthcheck.get("StartInterval"), 0.0)
    retries = int(healthcheck.get("Retries") or DEFAULT_RETRIES)
    health: dict[str, Any] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    _write(container_dir, health)
    while True:
        in_start = health["Status"] == "starting" and time.time() - started < start_period
        if stop.wait(start_interval if in_start and start_interval else interval):
            return
        pid = init_pid()
        if not pid:
            return
        t0 = time.time_ns()
        try:
            result = run_in(pid, process, timeout=timeout, limit=MAX_OUTPUT)
        except OSError:  # the container ended meanwhile
            return
        if stop.is_set():
            return
        if result.timed_out:
            code, output = -1, f"Health check exceeded timeout ({durations.text(int(timeout * 1e9))})"
        else:
            code, output = result.code, result.output.decode(errors="replace")
        health["Log"] = [*health["Log"], {"Start": _stamp(t0), "End": _stamp(time.time_ns()), "ExitCode": code,
                                          "Output": output}][-MAX_LOG_ENTRIES:]
        if code == 0:
            health["FailingStreak"], health["Status"] = 0, "healthy"
        elif not (health["Status"] == "starting" and t0 / 1e9 - started < start_period):
            health["FailingStreak"] += 1
            if health["FailingStreak"] >= retries:
                health["Status"] = "unhealthy"
        _write(container_dir, health)
