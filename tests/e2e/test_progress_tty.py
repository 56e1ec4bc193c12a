"""The terminal view and Ctrl-C as a person sees them: pybuild and BuildKit (a private dockerd's,
through Debian's docker client) run side by side in tmux, and what each leaves on the screen is
compared row by row once times, digests and sizes are set aside. A SIGINT to a plain-progress build
cancels the running step, kills its process and leaves the store as it was."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import pybuild, requires_root
from tests.conformance.peers import DOCKER, Dockerd
from tests.e2e.conftest import processes, step_no
from tests.tmux import ROOT, Tmux, have_tmux

pytestmark = [requires_root, pytest.mark.skipif(not have_tmux(), reason="tmux is installed by scripts/install-test-deps")]

WIDTH = 100
CANCELED_LINE = "ERROR: failed to solve: Canceled: context canceled"  # buildx's; its exit code is 130


def _context(tmp_path: Path, name: str, dockerfile: str) -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "f").write_text("f\n")
    return ctx


def _run(tmp_path: Path, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Tmux:
    t = Tmux(tmp_path / f"{name}.sock", width=WIDTH, height=30)
    t.start(argv, env=env, cwd=cwd)
    return t


def _docker(buildkit: Dockerd, *args: str) -> list[str]:
    return [DOCKER, "build", "--network", "host", *args]


def _shown(t: Tmux) -> list[str]:
    """Everything on the screen and above it (tmux scrolls one line to say the pane is dead), from
    the header on, without trailing blank lines or the terminal's echo of Ctrl-C."""
    lines = [ln.rstrip() for ln in t.tmux("capture-pane", "-p", "-S", "-", "-t", "0").splitlines()]
    lines = [ln for ln in lines if not ln.startswith("Pane is dead") and ln != "^C"]  # ^C: the terminal's echo
    while lines and not lines[-1]:
        lines.pop()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("[+] Building"))
    return lines[start:]


def _shape(line: str) -> str:
    """A row without what differs between two runs (timers, digests, sizes) or between two
    builders' choices (BuildKit shows the FROM unresolved, and CACHED when the base is known)."""
    line = re.sub(r" +\d+\.\ds$", "", line)
    line = re.sub(r"sha256:[0-9a-f]{64}", "sha256:D", line)
    line = re.sub(r"\b\d+(\.\d+)?[kM]?B\b", "NB", line)
    line = re.sub(r"(FROM docker\.io/library/busybox)\S*", r"\1", line)
    line = re.sub(r"\[\+\] Building \d+\.\ds", "[+] Building T", line)
    return line.replace("CACHED [1/", "[1/")


def _groups(lines: list[str]) -> list[tuple[str, ...]]:
    """The view's steps: each row with the `=> =>` rows under it."""
    groups: list[list[str]] = []
    for line in lines:
        if line.startswith(" => => ") and groups:
            groups[-1].append(line)
        else:
            groups.append([line])
    return [tuple(g) for g in groups]


def _rows_aligned(lines: list[str]) -> bool:
    """Each step and status row ends with its time one column short of the terminal's edge."""
    rows = [ln for ln in lines if ln.startswith(" => ") and not ln.startswith(" => => #")]
    return bool(rows) and all(len(ln) == WIDTH - 1 and re.search(r" \d+\.\ds$", ln) for ln in rows)


def test_the_tty_view_has_buildkits_shape(buildkit: Dockerd, store: dict[str, str], tmp_path: Path) -> None:
    dockerfile = ("FROM busybox\nRUN echo hi\nRUN for i in 1 2 3 4 5 6; do echo line $i; sleep 0.4; done\n"
                  "COPY f /f\n")
    screens: dict[str, tuple[list[str], list[str]]] = {}
    for who in ("buildkit", "pybuild"):
        ctx = _context(tmp_path, who, dockerfile)
        argv = (_docker(buildkit, "--progress=tty", "-t", "tty:1", ".") if who == "buildkit"
                else ["pybuild", "build", "--progress=tty", "-t", "tty:1", "."])
        t = _run(tmp_path, who, argv, buildkit.env if who == "buildkit" else store, ctx)
        try:
            live = t.wait_for(r"=> => # line 3", timeout=60).splitlines()
            assert t.wait_exit() == 0, t.screen()
            screens[who] = ([ln.rstrip() for ln in live], _shown(t))
        finally:
            t.close()
    for who, (live, final) in screens.items():
        head = next(ln for ln in live if ln.startswith("[+] Building"))
        assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(\d+/\d+\)", head), (who, live)  # no FINISHED yet
        run = next(i for i, ln in enumerate(live) if "[3/4] RUN for i" in ln)
        assert re.search(r" \d+\.\ds$", live[run]) and live[run + 1:run + 4] == [
            " => => # line 1", " => => # line 2", " => => # line 3"], (who, live)  # the running step's tail
        assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(9/9\) FINISHED", final[0]), (who, final)
        assert _rows_aligned(final[1:]) and not any("# line" in ln for ln in final), (who, final)
    ours, theirs = [_shape(ln) for ln in screens["pybuild"][1]], [_shape(ln) for ln in screens["buildkit"][1]]
    shown = "\n".join(f"{a:<60} | {b}" for a, b in zip(ours, theirs))
    # BuildKit lists steps by when they started: the FROM and the context load start together, in either order
    assert sorted(_groups(ours)) == sorted(_groups(theirs)), shown
    assert [g for g in _groups(ours) if "/4]" in g[0]] == [g for g in _groups(theirs) if "/4]" in g[0]], shown
    assert ours[0] == theirs[0] and _groups(ours)[-1] == _groups(theirs)[-1], shown  # the header; exporting last


def test_ctrl_c_in_the_tty_view_cancels_as_buildkit_does(buildkit: Dockerd, store: dict[str, str],
                                                         tmp_path: Path) -> None:
    seconds = random.randint(300, 399)  # a process of this test's own, to look for afterwards
    dockerfile = f"FROM busybox\nRUN echo start; sleep {seconds}; echo end\nRUN echo after\n"
    shown: dict[str, list[str]] = {}
    for who in ("buildkit", "pybuild"):
        ctx = _context(tmp_path, who, dockerfile)
        argv = (_docker(buildkit, "--progress=tty", "--no-cache", ".") if who == "buildkit"
                else ["pybuild", "build", "--progress=tty", "."])
        t = _run(tmp_path, who, argv, buildkit.env if who == "buildkit" else store, ctx)
        try:
            t.wait_for(r"=> => # start", timeout=60)
            t.keys("C-c")
            code = t.wait_exit(timeout=60)
            shown[who] = _shown(t)
        finally:
            t.close()
        if who == "pybuild":
            assert code == 130, shown[who]  # buildx's exit code for a cancelled build (docker 20.10's client: 1)
    for who, lines in shown.items():
        row = next(ln for ln in lines if "RUN echo start" in ln)
        assert re.fullmatch(rf" => CANCELED \[2/3\] RUN echo start; sleep {seconds}; echo end +\d+\.\ds", row), lines
        assert "context canceled" in lines[-1] and not any("# start" in ln for ln in lines), (who, lines)
        assert not any("[3/3]" in ln for ln in lines)  # the step after it never starts
    assert shown["pybuild"][-1] == CANCELED_LINE and not any("Traceback" in ln for ln in shown["pybuild"])
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(4/5\) CANCELED", shown["pybuild"][0]), shown["pybuild"]
    deadline = time.monotonic() + 10  # BuildKit's container goes a little after its client
    while processes(f"sleep\0{seconds}\0"):
        assert time.monotonic() < deadline, "a cancelled step's process is still running"
        time.sleep(0.1)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_sigint_cancels_the_running_step_kills_it_and_leaves_the_store_as_it_was(
        store: dict[str, str], tmp_path: Path) -> None:
    seconds = random.randint(400, 499)
    ctx = _context(tmp_path, "ctx", f"FROM busybox\nRUN echo start; sleep {seconds}; echo end\nRUN echo after\n")
    root = Path(store["PYBUILD_ROOT"])
    warm = _context(tmp_path, "warm", "FROM busybox\nRUN true\n")  # the base's snapshot (made at its first RUN) first
    pybuild("build", "-q", str(warm), env=store)
    before = _files(root)
    env = {**os.environ, **store, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "builder", "build", "--progress=plain", "-t", "sigint:1", str(ctx)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while not any(re.fullmatch(r"#\d+ \d+\.\d+ start", ln) for ln in seen):
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, "".join(seen)
        seen.append(line.rstrip("\n"))
    deadline = time.monotonic() + 10
    while not processes(f"sleep\0{seconds}\0"):  # the step's process runs (`start` came just before it)
        assert time.monotonic() < deadline, "the step's sleep never ran"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)[::-1]
    out = "\n".join(seen) + "\n" + rest
    assert proc.returncode == 130, out
    n = step_no(out, "[2/3] RUN echo start")
    assert f"#{n} CANCELED" in out.splitlines() and "Traceback" not in out and "KeyboardInterrupt" not in out
    assert out.rstrip().splitlines()[-2:] == [out.rstrip().splitlines()[-2], CANCELED_LINE]
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(4/5\) CANCELED", out.rstrip().splitlines()[-2]), out
    assert "[3/3]" not in out
    assert not processes(f"sleep\0{seconds}\0")  # the container's process is gone
    added = _files(root) - before
    assert {p for p in added if not p.startswith(("builds/", "cache/ast"))} == set(), added  # nothing half-made
    assert not any((root / "tmp").iterdir()) and "sigint:1" not in pybuild("images", env=store).stdout
    record = next(p for p in added if p.startswith("builds/"))
    assert '"status": "cancelled"' in (root / record).read_text().replace('":"', '": "')
