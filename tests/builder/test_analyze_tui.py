"""The terminal explorer (`pybuild analyze IMAGE` on a terminal), driven through tmux as a person
would: keys typed one at a time, the screen read back with capture-pane. A 5-layer docker-archive
whose every mark and size is known; 100- and 80-column terminals, and one without colours."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.builder.analyze_fixtures import APP_LAYERS
from tests.builder.test_analyze_dive import docker_archive
from tests.conftest import ROOT, pybuild
from tests.tmux import SGR, Tmux, have_tmux

pytestmark = pytest.mark.skipif(not have_tmux(), reason="not installed: tmux (scripts/install-test-deps)")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tui") / "app.tar"
    docker_archive(APP_LAYERS, path)
    return path


@pytest.fixture
def term(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path / "tmux.sock")
    yield t
    t.close()


def row(screen: str, pattern: str) -> str:
    """The one line of the tree pane matching `pattern` (the pane starts where its title does)."""
    lines = screen.splitlines()
    start = lines[0].index("Layer ")
    found = [line[start:] for line in lines[1:] if re.search(pattern, line[start:])]
    assert len(found) == 1, f"{pattern!r} matches {len(found)} lines of:\n{screen}"
    return found[0]


def explore_layer_3(term: Tmux, image: Path, width: int, env: dict[str, str] | None = None) -> None:
    """The walk the issue asks for: layer 3, open a directory, filter to changes, search a path."""
    term.width = width
    term.start(["pybuild", "analyze", str(image)], env=env)
    screen = term.wait_for(r"Layers \(5\)")
    assert "Layer 0: whole tree" in screen and re.search(r"A +2\.1 MB  ▸ usr/", screen)
    term.keys("]", "]", "]")
    screen = term.wait_for(r"Layer 3: whole tree  \(4 rows\)")
    # the tree as of layer 3, closed: summed sizes; /var lost its 5 MB file in this layer
    assert re.search(r"^ 3 154\.1 kB  step 3", screen, re.M)
    assert re.search(r" 36\.6 kB  ▸ app/", screen) and re.search(r" 0 B  ▸ var/", screen)
    assert re.match(r"^ {4,}36\.6 kB  ▸ app/$", row(screen, r"app/$"))  # no mark: app/ existed below
    term.keys("Home", "Space")  # the first row, app/: open it
    screen = term.wait_for(r"▾ app/")
    assert re.search(r"^M +4\.1 kB +main\.py$", row(screen, "main.py"))
    assert re.search(r"^A +30\.0 kB +▸ static/$", row(screen, "static/"))
    assert re.search(r"^  W +2\.5 kB +util\.py$", row(screen, "util.py"))  # removed by layer 4: wasted
    term.keys("Down")
    screen = term.wait_for(r"/app/main\.py  file")
    assert "/app/main.py  file  mode 644  owner 0:0  4100 bytes  layers 2A 3M" in screen
    term.keys("f")
    screen = term.wait_for(r"Layer 3: changes of this layer")
    assert "util.py" not in screen and "etc/" not in screen and "main.py" in screen
    term.keys("o")  # open everything: the removed file shows, marked D, with the size it had
    screen = term.wait_for(r"apt\.bin")
    assert re.search(r"D +5\.0 MB +apt\.bin$", row(screen, "apt.bin"))
    assert re.search(r"M +120\.0 kB +sh$", row(screen, r" sh$"))
    assert "libc.so" not in screen  # unchanged in layer 3
    term.keys("f")  # changes since the base layer: layer 1's and 2's too
    screen = term.wait_for(r"changes since the base layer")
    assert re.search(r"A +3\.0 MB +libcrypto\.so$", row(screen, "libcrypto.so"))
    assert "apt.bin" not in screen  # added in 1, removed in 3: no change against layer 0
    assert re.search(r"M +90 B +hosts$", row(screen, "hosts"))
    term.keys("f", "/")
    term.type("logo")
    screen = term.wait_for(r"search: logo")
    assert re.search(r"A +30\.0 kB +logo\.png$", row(screen, "logo.png"))
    assert "main.py" not in screen and "usr/" not in screen and "(3 rows)" in screen
    term.keys("Escape")
    screen = term.wait_for(r"Layer 3: whole tree  \(\d+ rows\)")
    assert "main.py" in screen
    if width <= 80:
        assert all(len(line) <= width for line in screen.splitlines())
    term.keys("q")
    assert term.wait_exit() == 0


def test_explorer_at_100_columns(term: Tmux, image: Path) -> None:
    explore_layer_3(term, image, 100)


def test_explorer_at_80_columns_with_help_and_mouse(term: Tmux, image: Path) -> None:
    term.width = 80
    term.start(["pybuild", "analyze", str(image)])
    screen = term.wait_for(r"Layer 0: whole tree")
    term.keys("?")
    screen = term.wait_for(r"the layer explorer")
    assert "W wasted" in screen and "f               filter" in screen
    term.keys("Escape")
    term.wait_for(r"Layers \(5\)")
    term.click(3, 5)  # the layer list's fifth row: layer 4
    screen = term.wait_for(r"Layer 4: whole tree")
    term.click(45, 1)  # the first tree row, app/: selected; a second press opens it
    term.wait_for(r"/app  dir")
    term.click(45, 1)
    screen = term.wait_for(r"▾ app/")
    assert re.search(r"A +300 B +config\.json$", row(screen, "config.json")) and "util.py" in screen
    assert re.search(r"D +2\.5 kB +util\.py$", row(screen, "util.py"))
    explore_layer_3(Tmux(Path(term.sock).with_name("second.sock"), 80), image, 80)


def test_explorer_without_colours(term: Tmux, image: Path) -> None:
    def colours(screen: str) -> set[str]:
        """SGR colour parameters on the screen (foreground and background, any depth)."""
        out = set()
        for params in SGR.findall(screen):
            p = params.split(";")
            i = 0
            while i < len(p):
                if p[i] in ("38", "48") and i + 2 < len(p) and p[i + 1] == "5":
                    out.add(f"{p[i]}:{p[i + 2]}")
                    i += 3
                elif p[i] in ("38", "48") and i + 4 < len(p) and p[i + 1] == "2":
                    out.add(f"{p[i]}:{','.join(p[i + 2:i + 5])}")
                    i += 5
                elif p[i].isdigit() and (30 <= int(p[i]) <= 37 or 90 <= int(p[i]) <= 97):
                    out.add(f"38:{int(p[i]) - 30 if int(p[i]) < 90 else int(p[i]) - 82}")
                    i += 1
                else:
                    i += 1
        return out

    def greys(found: set[str]) -> bool:
        def grey(value: str) -> bool:
            if "," in value:
                r, g, b = value.split(",")
                return r == g == b
            n = int(value)
            return n in (0, 7, 8, 15) or n >= 232 or (16 <= n <= 231 and len({(n - 16) // 36, (n - 16) // 6 % 6,
                                                                                (n - 16) % 6}) == 1)
        return all(grey(c.split(":")[1]) for c in found)

    term.start(["pybuild", "analyze", str(image)])
    term.wait_for(r"Layer 0: whole tree")
    coloured = colours(term.screen(escapes=True))
    assert not greys(coloured)  # the A marks are green
    term.keys("q")
    term.close()
    plain = Tmux(Path(term.sock).with_name("plain.sock"))
    try:
        plain.start(["pybuild", "analyze", str(image)], env={"NO_COLOR": "1"})
        plain.wait_for(r"Layer 0: whole tree")
        plain.keys("]", "]", "]", "o")
        screen = plain.wait_for(r"apt\.bin")
        assert re.search(r"D +5\.0 MB +apt\.bin$", row(screen, "apt.bin"))  # the letter carries the mark
        assert greys(colours(plain.screen(escapes=True)))
    finally:
        plain.close()
    explore_layer_3(Tmux(Path(term.sock).with_name("nocolor.sock")), image, 100, env={"NO_COLOR": "1"})


def test_reports_stay_off_a_terminal_or_when_asked(term: Tmux, image: Path) -> None:
    table = pybuild("analyze", str(image)).stdout  # not a terminal: today's report
    assert table.startswith(f"Image: {image}  (5 layers)") and "INSTRUCTION" in table
    cases = ((["--no-tui"], {}, "INSTRUCTION"), (["--json"], {}, '"version": 1'), (["--ci"], {}, "lowestEfficiency"),
             ([], {"TERM": "dumb"}, "INSTRUCTION"))
    for n, (flags, env, expected) in enumerate(cases):
        t = Tmux(Path(term.sock).with_name(f"report{n}.sock"))
        try:
            t.start(["pybuild", "analyze", *flags, str(image)], env=env)
            assert t.wait_exit() in (0, 1)  # 1: --ci's rules fail on this image
            everything = t.tmux("capture-pane", "-p", "-S", "-", "-t", "0")
            assert expected in everything and "Layer 0: whole tree" not in everything, (flags, env)
        finally:
            t.close()


def test_explorer_on_a_bad_image_says_why(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "builder", "analyze", str(tmp_path / "nothere.tar")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode != 0 and proc.returncode != 70 and "Traceback" not in proc.stderr


def test_diff_opens_the_explorer_on_two_images(term: Tmux, image: Path, tmp_path: Path) -> None:
    docker_archive(APP_LAYERS[:3], tmp_path / "old.tar")
    term.start(["pybuild", "diff", "--tui", str(tmp_path / "old.tar"), str(image)])
    screen = term.wait_for(r"Layer 1: changes of this layer")
    assert re.search(r"^ 0 +10\.7 MB  A: ", screen, re.M) and re.search(r"^ 1 +5\.8 MB  B: ", screen, re.M)
    term.keys("o")
    screen = term.wait_for(r"apt\.bin")
    for mark, size, name in (("A", "300 B", "config.json"), ("M", "4.1 kB", "main.py"), ("A", "30.0 kB", "logo.png"),
                             ("D", "2.5 kB", "util.py"), ("M", "120.0 kB", "sh"), ("D", "5.0 MB", "apt.bin")):
        assert re.search(rf"^{mark} +{re.escape(size)} +{re.escape(name)}$", row(screen, rf" {re.escape(name)}$"))
    assert "libc.so" not in screen and "hosts" not in screen  # the same in both
    term.keys("q")
    assert term.wait_exit() == 0
    off = pybuild("diff", "--tui", str(tmp_path / "old.tar"), str(image), check=False)  # not a terminal
    assert off.returncode == 1 and "diff --tui needs a terminal" in off.stderr and "Traceback" not in off.stderr
