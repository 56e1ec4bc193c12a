"""The explorer on an image pybuild built: each layer's panel names the build step that made it
(from the build record), and the tree shows what the step wrote. Driven through tmux."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import pybuild
from tests.tmux import Tmux, have_tmux

pytestmark = pytest.mark.skipif(not have_tmux(), reason="not installed: tmux (scripts/install-test-deps)")


def test_layers_name_their_build_steps(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /app/hello.txt\nRUN echo built > /app/built\n")
    (ctx / "hello.txt").write_text("hello\n")
    pybuild("build", "-q", "-t", "explored:1", str(ctx), env=store)
    term = Tmux(tmp_path / "tmux.sock")
    try:
        term.start(["pybuild", "analyze", "explored:1"], env=store)
        term.wait_for(r"Layers \(3\)")
        term.keys("]")
        term.wait_for(r"step #\d+ line 2: COPY hello")  # the panel is 40 columns wide: the rest is cut
        term.keys("]")
        term.wait_for(r"step #\d+ line 3: RUN echo")
        term.keys("f", "o")
        screen = term.wait_for(r"A +6 B +built")  # what the RUN step wrote, its directory open
        assert "(2 rows)" in screen  # /app and /app/built: layer 1's hello.txt is not a change of layer 2
        term.keys("q")
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_the_html_explorer_names_build_steps(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /srv/hello.txt\n")
    (ctx / "hello.txt").write_text("hello\n")
    pybuild("build", "-q", "-t", "explored:2", str(ctx), env=store)
    pybuild("analyze", "--html", str(tmp_path / "page.html"), "explored:2", env=store)
    page = (tmp_path / "page.html").read_text()
    assert re.search(r'<tr data-layer="1">.*?<td class="cmd">step #\d+ line 2: COPY hello.txt /srv/hello.txt</td>',
                     page)
