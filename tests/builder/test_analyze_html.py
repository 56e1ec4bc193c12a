"""The HTML report rendered by real headless Chromium: the DOM it builds and the pixels it paints."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from builder.analyze.advice import RebuildCost, Suggestion
from builder.analyze.html import BAR, CACHED, RAN, WASTE, render_html, timeline
from tests.builder.test_analyze_ci import REPORT
from tests.conftest import requires_tool

BUILD = {"id": "20261123T180000-00000001", "started": 100.0, "steps": [
    {"id": 1, "instruction": "FROM busybox", "duration": 0.5, "cache": "hit", "started": 100.0},
    {"id": 2, "instruction": "COPY . /app", "duration": 1.0, "cache": "miss", "started": 100.5},
    {"id": 3, "instruction": "RUN make", "duration": 4.0, "cache": "miss", "started": 101.5}]}
COSTS = [RebuildCost("src/", 2, 5.0, ("line 2: COPY . /app", "line 3: RUN make"))]
SUGGESTIONS = [Suggestion(3, "RUN make", "cache-mount", "use a cache mount")]
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1000,1400", "--hide-scrollbars"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", *args], capture_output=True, timeout=120,
                          check=True)


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytes(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = bytes(line)
    return width, height, [b"".join(r[i:i + 3] for i in range(0, len(r), bpp)) for r in rows]  # RGB only


def count(rows: list[bytes], colour: str) -> int:
    rgb = bytes.fromhex(colour[1:])
    return sum(1 for r in rows for i in range(0, len(r), 3) if r[i:i + 3] == rgb)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(REPORT, build=BUILD, costs=COSTS, suggestions=SUGGESTIONS))
    return path


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=|<script|@import|url\(""", html)
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_timeline_uses_recorded_start_times_else_lays_steps_end_to_end() -> None:
    assert [(s.start, s.duration, s.cached) for s in timeline(BUILD)] == [(0.0, 0.5, True), (0.5, 1.0, False),
                                                                          (1.5, 4.0, False)]
    plain = {"started": 5.0, "steps": [{"duration": 2.0}, {"duration": 3.0}]}
    assert [s.start for s in timeline(plain)] == [0.0, 2.0]


@requires_tool("chromium")
def test_chromium_builds_the_expected_dom(page: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout.decode()
    assert "<h1>pybuild analyze: demo:1</h1>" in dom
    assert "82.14 %" in dom and "7.0 kB (7000 bytes)" in dom and "5.0 kB (5000 bytes, 33.33 %)" in dom
    assert len(re.findall(r'<rect class="size"', dom)) == 3
    assert len(re.findall(r'<rect class="wasted"', dom)) == 2  # layers 0 and 1 hold wasted bytes
    assert len(re.findall(r'<rect class="cached"', dom)) == 1 and len(re.findall(r'<rect class="ran"', dom)) == 2
    assert "4.00s" in dom and "CACHED" in dom
    assert "<code>src/</code></td><td class=\"n\">2</td><td class=\"n\">5.00s</td>" in dom
    assert "use a cache mount" in dom


@requires_tool("chromium")
def test_chromium_paints_the_chart(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    width, height, rows = read_png(shot)
    assert (width, height) == (1000, 1400)
    blue, red = count(rows, BAR), count(rows, WASTE)
    # layer 0 is 5000 bytes all wasted, layer 1 is 15000 with 5000 wasted: red 10000, blue 10000
    # bytes wide, each bar as tall as the other; plus a 12x12 legend square of each colour
    assert blue > 2000 and red > 2000
    assert abs(blue - red) / red < 0.05
    # the waterfall: steps that ran took 1.0 + 4.0 s, the cached one 0.5 s, bars of equal height
    ran, cached = count(rows, RAN) - 144, count(rows, CACHED) - 144  # minus the 12x12 legend squares
    assert 8 < ran / cached < 12
