"""builder.util.progress and the tty view: byte work shown only where it is drawn, BuildKit's rows."""

from __future__ import annotations

import io
import re
import time

import pytest

from builder.util.progress import Progress, make_progress
from builder.util.progress import TtyProgress


def test_only_the_terminal_printer_draws_byte_bars() -> None:
    assert make_progress("tty", io.StringIO()).shows_bytes
    for mode in ("plain", "json", "quiet"):
        stream = io.StringIO()
        progress = make_progress(mode, stream)
        assert not progress.shows_bytes
        task = progress.bytes_task(3, "committing", None)
        task.update(1 << 20)
        task.close()
        assert "committing" not in stream.getvalue()
    assert not Progress().shows_bytes


def _frames(text: str) -> list[list[str]]:
    """The tty view's successive frames (each redraw starts by moving the cursor up), as lines
    without their erase codes."""
    clean = re.sub(r"\x1b\[[0-9;]*[KJm]", "", text)
    return [frame.split("\n")[:-1] for frame in re.split(r"\x1b\[\d+A\r", clean)]


def test_the_tty_view_is_buildkits_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("LINES", "20")
    stream = io.StringIO()
    view = TtyProgress(stream)
    view.start(1, "[internal] load build definition from Dockerfile")
    view.status(1, "transferring dockerfile: 99B done")
    view.done(1)
    view.start(2, "[1/3] FROM busybox")
    view.cached(2)
    view.start(3, "[2/3] RUN make")
    view.output(3, b"".join(f"line {i}\n".encode() for i in range(20)))
    time.sleep(1.1)  # a silent step: the ticker still moves its timer
    live = _frames(stream.getvalue())[-1]
    assert re.fullmatch(r"\[\+\] Building 1\.\ds \(2/3\)", live[0]), live
    assert live[1] == f"{' => [internal] load build definition from Dockerfile':<54} 0.0s"  # 60 - 1 columns
    assert live[2] == f"{' => => transferring dockerfile: 99B':<54} 0.0s"
    assert live[3] == f"{' => CACHED [1/3] FROM busybox':<54} 0.0s"
    assert re.fullmatch(r" => \[2/3\] RUN make +1\.\ds", live[4]) and len(live[4]) == 59, live
    assert live[5:] == [f" => => # line {i}" for i in range(14, 20)]  # the last six output lines
    view.done(3)
    view.start(4, "[3/3] RUN false")
    view.output(4, b"oops\n")
    view.error(4, "exit code: 1")
    view.close()
    final = _frames(stream.getvalue())[-1]
    assert re.fullmatch(r"\[\+\] Building 1\.\ds \(3/4\) ERROR", final[0]), final
    assert re.fullmatch(r" => \[2/3\] RUN make +1\.\ds", final[4]) and len(final) == 6  # the tails are gone
    assert re.fullmatch(r" => ERROR \[3/3\] RUN false +0\.0s", final[5]), final


def test_the_live_view_fits_the_terminal_and_the_last_frame_has_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "8")
    stream = io.StringIO()
    view = TtyProgress(stream)
    for n in range(1, 11):
        view.start(n, f"[{n}/11] RUN step {n}")
        view.done(n)
    view.start(11, "[11/11] RUN a very long command line that does not fit in forty columns")
    view.output(11, b"x" * 100 + b"\n")
    view.status(11, "cancelling")
    view.error(11, "cancelled")
    frames = _frames(stream.getvalue())
    assert all(len(frame) <= 7 for frame in frames)  # the block is redrawn in place only while it fits the screen
    assert all(len(line) <= 39 for frame in frames for line in frame)  # no line wraps
    running = next(f for f in frames if any(line.startswith(" => => # x") for line in f))
    assert running[0].startswith("[+] Building") and running[-3].startswith(" => [11/11] RUN a very long")
    assert running[-1] == " => => # " + "x" * 30  # cut at the edge
    view.close()
    final = frames = _frames(stream.getvalue())[-1]
    assert re.fullmatch(r"\[\+\] Building \d\.\ds \(10/11\) CANCELED", final[0])
    assert [line[:16] for line in final[1:3]] == [" => [1/11] RUN s", " => [2/11] RUN s"] and len(final) == 13
    assert re.fullmatch(r" => CANCELED \[11/11\] RUN a very lo 0\.0s", final[11]), final
    assert final[12].startswith(" => => cancelling")


def test_byte_work_is_a_row_while_it_runs() -> None:
    stream = io.StringIO()
    view = TtyProgress(stream)
    idle = view.bytes_task(1, "unpacking", None)
    idle.close()
    assert stream.getvalue() == ""  # nothing moved: no row drawn
    view.start(2, "[2/2] RUN make")
    task = view.bytes_task(2, "committing", 4096)
    task.update(1000)
    time.sleep(0.4)  # drawn by the ticker
    assert any(re.fullmatch(r" => => committing 1\.00kB / 4\.10kB +0\.\ds", line)
               for frame in _frames(stream.getvalue()) for line in frame), stream.getvalue()
    task.close()
    view.done(2)
    view.close()
    assert not any("committing" in line for line in _frames(stream.getvalue())[-1])  # gone once done
