"""A terminal program driven the way a person uses it: tmux runs it, send-keys types, capture-pane reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SGR = re.compile(r"\x1b\[([0-9;]*)m")


class Tmux:
    """One private tmux server (its own socket) with one window of `width` x `height`."""

    def __init__(self, sock: Path, width: int = 100, height: int = 30) -> None:
        self.sock, self.width, self.height = str(sock), width, height
        self.status_file = f"{sock}.status"

    def tmux(self, *args: str) -> str:
        # the server passes its environment on: sizes from the caller's (COLUMNS, LINES) would override the window's,
        # and CI (set by CI runners) turns interactive programs such as dive into their batch mode
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX", "CI")}
        return subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args], check=True, capture_output=True,
                              text=True, timeout=30, env=env).stdout

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        """Run `argv` (a pybuild command when it starts with "pybuild") in a new session."""
        if argv[0] == "pybuild":
            argv = [sys.executable, "-m", "builder", *argv[1:]]
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        envs = {"PYTHONPATH": path, "PATH": os.environ.get("PATH", ""), **(env or {})}
        flags = [x for k, v in envs.items() for x in ("-e", f"{k}={v}")]
        # the window gets its size first, then the program starts in it (respawn-pane): it never sees another
        self.tmux("new-session", "-d", "-x", str(self.width), "-y", str(self.height), "cat")
        self.tmux("set-option", "-t", "0", "remain-on-exit", "on")
        self.tmux("set-option", "-t", "0", "window-size", "manual")
        self.tmux("resize-window", "-t", "0", "-x", str(self.width), "-y", str(self.height))
        # through a shell that outlives the program and writes its exit status: tmux 3.3 sometimes marks
        # a pane dead (its terminal closed) without ever reaping the process, so no status, and before
        # reading the program's last output; the shell's trap keeps it alive through a Ctrl-C
        wrapper = ["sh", "-c", f'trap : INT; "$@"; echo $? > {_quote(self.status_file)}', "sh", *argv]
        self.tmux("respawn-pane", "-k", "-t", "0", "-c", str(cwd), *flags, " ".join(_quote(a) for a in wrapper))

    def keys(self, *keys: str, delay: float = 0.15) -> None:
        """Type keys one at a time (tmux key names: Enter, Escape, Down, C-c...), pausing between them."""
        for k in keys:
            self.tmux("send-keys", "-t", "0", k)
            time.sleep(delay)

    def type(self, text: str, delay: float = 0.05) -> None:
        for ch in text:
            self.tmux("send-keys", "-t", "0", "-l", ch)
            time.sleep(delay)

    def click(self, x: int, y: int) -> None:
        """A left click at column x, row y (0-based), as an SGR mouse report (what a terminal sends)."""
        self.tmux("send-keys", "-t", "0", "-l", f"\x1b[<0;{x + 1};{y + 1}M\x1b[<0;{x + 1};{y + 1}m")
        time.sleep(0.2)

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-t", "0", *(["-e"] if escapes else []))

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The screen once it shows `text` (a regular expression); fails with the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if re.search(text, shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {text!r}; the screen:\n{shown}")
            time.sleep(0.05)

    def dead(self) -> int | None:
        """The exit status once the program ended, else None."""
        out = self.tmux("display-message", "-p", "-t", "0",
                        "#{pane_dead} #{pane_dead_status}x#{pane_dead_signal}").split()
        if out[0] != "1":
            return None
        status, _, signal = out[1].partition("x")
        try:
            return int(Path(self.status_file).read_text())  # 128+N: killed by signal N (the shell's $?)
        except (OSError, ValueError):
            return int(status) if status else -int(signal or 0)  # the shell itself was killed

    def wait_exit(self, timeout: float = 60.0) -> int:
        """The program's exit status, once it ended."""
        deadline = time.monotonic() + timeout
        while (status := self.dead()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout}s; the screen:\n{self.screen()}")
            time.sleep(0.05)
        return status

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=30)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def have_tmux() -> bool:
    return shutil.which("tmux") is not None
