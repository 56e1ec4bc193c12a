"""HEALTHCHECK as Docker runs it: a detached container's supervisor probes inside the container
(its mount and uts namespaces: a volume's file, the container's hostname), `ps` shows
`(health: starting)` / `(unhealthy)` / `(healthy)`, `inspect` has State.Health; the same image under
a real dockerd goes through the same states."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import pybuild, requires_root
from tests.e2e.conftest import processes
from tests.conformance.peers import DOCKER, Dockerd

pytestmark = requires_root

CHECK = 'HEALTHCHECK --interval=1s --timeout=5s --retries=2 CMD hostname; test -e /flag/ok || (echo not yet; exit 1)'


def _image(tmp_path: Path, store: dict[str, str], tag: str, dockerfile: str) -> Path:
    ctx = tmp_path / f"ctx-{tag.replace(':', '-')}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    pybuild("build", "-q", "-t", tag, str(ctx), env=store)
    return ctx


def _until(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`what()` once it is truthy (polled); fails after `timeout` seconds with its last value."""
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, f"still {value!r} after {timeout}s"
        time.sleep(0.1)
    return value


def _health(cid: str, store: dict[str, str]) -> dict[str, Any]:
    return json.loads(pybuild("inspect", "-f", "{{json .State.Health}}", cid, env=store).stdout)


def _status(cid: str, store: dict[str, str]) -> str:
    return pybuild("ps", "-a", "--format", "{{.ID}} {{.Status}}", env=store).stdout.split(cid[:12] + " ")[1].split("\n")[0]


def test_a_detached_containers_health_goes_starting_unhealthy_healthy(store: dict[str, str], tmp_path: Path) -> None:
    _image(tmp_path, store, "health:1", f"FROM busybox\n{CHECK}\nCMD [\"sleep\", \"300\"]\n")
    flag = tmp_path / "flag"
    flag.mkdir()
    cid = pybuild("run", "-d", "-v", f"{flag}:/flag", "health:1", env=store).stdout.strip()
    try:
        assert re.fullmatch(r"Up (Less than a second|\d seconds?) \(health: starting\)", _status(cid, store))
        _until(lambda: _health(cid, store)["Status"] == "unhealthy")
        health = _health(cid, store)
        assert health["FailingStreak"] >= 2 and 2 <= len(health["Log"]) <= 5
        probe = health["Log"][-1]
        assert probe["ExitCode"] == 1 and probe["Output"] == f"{cid[:12]}\nnot yet\n"  # the container's hostname
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", probe["Start"]) and probe["End"] >= probe["Start"]
        assert re.fullmatch(r"Up \d+ seconds? \(unhealthy\)", _status(cid, store))
        assert cid[:12] in pybuild("ps", "-q", "-f", "health=unhealthy", env=store).stdout
        (flag / "ok").touch()  # seen through the container's own mounts only
        _until(lambda: _health(cid, store)["Status"] == "healthy")
        health = _health(cid, store)
        assert health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0
        assert re.fullmatch(r"Up \d+ seconds? \(healthy\)", _status(cid, store))
        assert cid[:12] not in pybuild("ps", "-q", "-f", "health=unhealthy", env=store).stdout
        while len(_health(cid, store)["Log"]) < 5:
            time.sleep(0.2)
        time.sleep(1.5)
        assert len(_health(cid, store)["Log"]) == 5  # the last five probes, as Docker keeps
    finally:
        pybuild("rm", "-f", cid, env=store)
    assert not (Path(store["PYBUILD_ROOT"]) / "containers" / cid).exists()


def test_start_period_timeout_and_the_run_flags(store: dict[str, str], tmp_path: Path) -> None:
    _image(tmp_path, store, "health:2", "FROM busybox\nHEALTHCHECK --interval=1h CMD true\nCMD [\"sleep\", \"300\"]\n")
    # failures within the start period do not count until the first success
    starting = pybuild("run", "-d", "--health-cmd", "exit 3", "--health-interval", "500ms", "--health-retries", "1",
                       "--health-start-period", "1m", "health:2", env=store).stdout.strip()
    # a probe that outlives its timeout is killed and counts as a failure: exit code -1, Docker's message
    slow = pybuild("run", "-d", "--health-cmd", "sleep 271", "--health-interval", "500ms", "--health-timeout", "1s",
                   "--health-retries", "1", "health:2", env=store).stdout.strip()
    plain = pybuild("run", "-d", "--no-healthcheck", "health:2", env=store).stdout.strip()
    try:
        _until(lambda: len(_health(starting, store)["Log"]) >= 3)
        health = _health(starting, store)
        assert health["Status"] == "starting" and health["FailingStreak"] == 0
        assert {p["ExitCode"] for p in health["Log"]} == {3}
        assert _status(starting, store).endswith("(health: starting)")
        _until(lambda: _health(slow, store)["Status"] == "unhealthy")
        probe = _health(slow, store)["Log"][0]
        assert probe["ExitCode"] == -1 and probe["Output"] == "Health check exceeded timeout (1s)"
        assert len(processes("sleep\0" "271\0")) <= 1  # a timed-out probe is killed: they never pile up
        inspected = json.loads(pybuild("inspect", plain, env=store).stdout)[0]
        assert "Health" not in inspected["State"] and inspected["State"]["Running"] is True
        assert re.fullmatch(r"Up (Less than a second|\d+ seconds?)", _status(plain, store))
        config = json.loads(pybuild("inspect", "-f", "{{json .Config.Healthcheck}}", starting, env=store).stdout)
        assert config == {"Test": ["CMD-SHELL", "exit 3"], "Interval": 500_000_000, "Retries": 1,
                          "StartPeriod": 60_000_000_000}
    finally:
        pybuild("rm", "-f", starting, slow, plain, env=store)
    bad = pybuild("run", "-d", "--health-interval", "soon", "health:2", env=store, check=False)
    assert bad.returncode == 125 and '"--health-interval"' in bad.stderr and "Traceback" not in bad.stderr
    both = pybuild("run", "-d", "--no-healthcheck", "--health-cmd", "true", "health:2", env=store, check=False)
    assert both.returncode == 125 and "--no-healthcheck conflicts with --health-* options" in both.stderr




def test_the_same_image_under_dockerd_goes_through_the_same_states(buildkit: Dockerd, store: dict[str, str],
                                                                  tmp_path: Path) -> None:
    ctx = _image(tmp_path, store, "health:3", f"FROM busybox\n{CHECK}\nCMD [\"sleep\", \"300\"]\n")
    env = {**os.environ, **buildkit.env}

    def docker(*args: str) -> str:
        return subprocess.run([DOCKER, *args], env=env, check=True, capture_output=True, text=True).stdout

    docker("build", "-q", "--network", "host", "-t", "health:3", str(ctx))
    flags: dict[str, Path] = {who: tmp_path / f"flag-{who}" for who in ("docker", "pybuild")}
    for d in flags.values():
        d.mkdir()
    theirs = docker("run", "-d", "--network", "none", "-v", f"{flags['docker']}:/flag", "health:3").strip()
    ours = pybuild("run", "-d", "-v", f"{flags['pybuild']}:/flag", "health:3", env=store).stdout.strip()
    try:
        def states(who: str) -> tuple[dict[str, Any], str]:
            if who == "docker":
                health = json.loads(docker("inspect", "-f", "{{json .State.Health}}", theirs))
                status = docker("ps", "--format", "{{.Status}}", "-f", f"id={theirs}").strip()
                return health, status
            return _health(ours, store), _status(ours, store)

        def reaches(who: str, want: str) -> tuple[dict[str, Any], str] | None:
            health, status = states(who)
            return (health, status) if health["Status"] == want else None

        seen: dict[str, list[str]] = {"docker": [], "pybuild": []}
        for want in ("unhealthy", "healthy"):
            for who in ("docker", "pybuild"):
                health, status = _until(lambda: reaches(who, want))
                seen[who].append(re.sub(r"^Up .*? \(", "Up (", status))
                assert set(health) == {"Status", "FailingStreak", "Log"}
                assert set(health["Log"][-1]) == {"Start", "End", "ExitCode", "Output"}
                assert health["Log"][-1]["Output"].endswith("not yet\n" if want == "unhealthy" else "")
                assert (health["FailingStreak"] >= 2) if want == "unhealthy" else health["FailingStreak"] == 0
            for d in flags.values():
                (d / "ok").touch()
        assert seen["docker"] == seen["pybuild"] == ["Up (unhealthy)", "Up (healthy)"]
    finally:
        subprocess.run([DOCKER, "rm", "-f", theirs], env=env, capture_output=True)
        pybuild("rm", "-f", ours, env=store)


def test_a_foreground_container_is_probed_too(store: dict[str, str], tmp_path: Path) -> None:
    _image(tmp_path, store, "health:4", "FROM busybox\nHEALTHCHECK --interval=500ms --retries=1 CMD exit 1\n")
    name = f"fg-{os.getpid()}"
    env = {**os.environ, **store, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "builder", "run", "--rm", "--name", name, "health:4", "sleep", "20"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cid = _until(lambda: pybuild("ps", "-q", "-f", f"name={name}", env=store).stdout.strip())
        _until(lambda: _status(cid, store).endswith("(unhealthy)"))
    finally:
        pybuild("rm", "-f", name, env=store, check=False)
        proc.wait(30)
