"""builder.util.progress: byte-work bars only where they are drawn, and only once bytes move."""

from __future__ import annotations

import io

from builder.util.progress import Progress, make_progress


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


def test_a_bar_appears_on_the_first_bytes_and_not_before() -> None:
    stream = io.StringIO()
    progress = make_progress("tty", stream)
    idle = progress.bytes_task(2, "unpacking", None)
    idle.close()
    assert stream.getvalue() == ""  # nothing moved: no bar drawn (and tqdm not needed)
    task = progress.bytes_task(2, "committing", 4096)
    task.update(4096)
    task.close()
    assert "#2 committing" in stream.getvalue() and "/4.10k" in stream.getvalue()  # its total, in bytes


def test_the_tty_view_keeps_a_live_header_with_timers() -> None:
    import time

    from builder.util.progress import TtyProgress

    stream = io.StringIO()
    progress = TtyProgress(stream)
    progress.start(1, "[1/2] RUN sleep")
    time.sleep(1.1)  # a silent step: the ticker still moves its timer
    live = stream.getvalue()
    assert "[+] Building 0.0s (0/1)\n => #1 [1/2] RUN sleep  0.0s\n" in live
    assert " => #1 [1/2] RUN sleep  1.0s\n" in live or " => #1 [1/2] RUN sleep  0.5s\n" in live
    progress.done(1)
    progress.close()
    tail = stream.getvalue().split("\x1b[2K")[-1]
    assert tail.startswith("#1 DONE 1.") and tail.endswith("(1/1) FINISHED\n")  # the block cleared, then the total
