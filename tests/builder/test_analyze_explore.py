"""The explorer's model (builder/analyze/explore.py): per-layer marks against `pybuild diff`'s
comparison of the filesystems below and above each layer, on the hand-made cases and seeded
random stacks of test_analyze_dive.py, plus its tree, sizes, wasted marks, filters and search."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from builder.analyze.diff import compare_files, final_state
from builder.analyze.explore import ALL, CUMULATIVE, Explorer, explore
from tests.builder.analyze_fixtures import Member, layer_tar, sources
from tests.builder.test_analyze_dive import CASES, random_layers

CHANGE = {"A": "added", "M": "changed", "D": "removed"}


def diff_sets(layers: list[list[Member]]) -> list[set[tuple[str, str]]]:
    """What `pybuild diff` says each layer changed: the filesystem below it against the one above."""
    tars = [layer_tar(m) for m in layers]
    openers = [(lambda t=t: io.BytesIO(t), f"layer {i}") for i, t in enumerate(tars)]
    states = [final_state(openers[:i]) for i in range(len(tars) + 1)]
    return [{(c.path, c.change) for c in compare_files(states[i], states[i + 1])} for i in range(len(tars))]


def model_sets(model: Explorer) -> list[set[tuple[str, str]]]:
    """The model's marks, directories only where `pybuild diff` reports them (changed, not added or
    removed). `pybuild diff` keeps no state for a directory no tar member names (one implied by a
    path below it), so a file replacing one is "added" there and "M" (kind dir -> file) here, and
    one replacing a file is "removed" there."""
    out = []
    for i in range(len(model.layers)):
        marks = set()
        for node, mark in model.changed[i]:
            before, after = node.state(i - 1) if i else None, node.state(i)
            if mark == "M" and before is not None and before[0] == "dir" and not before[2]:
                marks.add((node.path, "added"))
            elif mark == "M" and after is not None and after[0] == "dir" and not after[2]:
                marks.add((node.path, "removed"))
            elif mark == "M" or not node.is_dir(i):
                marks.add((node.path, CHANGE[mark]))
        out.append(marks)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_marks_equal_pybuild_diff_on_hand_made_cases(name: str) -> None:
    assert model_sets(explore(sources(*CASES[name]))) == diff_sets(CASES[name])


def test_marks_equal_pybuild_diff_on_random_stacks() -> None:
    for seed in range(200):
        layers = random_layers(seed)
        assert model_sets(explore(sources(*layers))) == diff_sets(layers), (seed, layers)


def test_metadata_and_identical_rewrites() -> None:
    layers: list[list[Member]] = [["etc/", ("etc/a", 3), ("etc/b", 3), ("etc/c", 3)],
                                  [("etc/a", 3), ("etc/b", 3, 0o755), ("etc/c", 3, 0o644, 1000)]]
    m = explore(sources(*layers))
    assert m.changes(1) == {"/etc/b": "M", "/etc/c": "M"}  # /etc/a re-written unchanged: no mark
    a = m.find("/etc/a")
    assert a is not None and a.touched() == [(0, "A"), (1, "")] and a.wasted(0) and not a.wasted(1)
    assert m.wasted_bytes == [9, 0]
    c = m.find("etc/c")
    assert c is not None and "owner 1000:0" in m.details(c, 1) and "layers 0A 1M" in m.details(c, 1)


def test_tree_sizes_filters_and_search() -> None:
    layers: list[list[Member]] = [
        ["usr/", "usr/lib/", ("usr/lib/a.so", 1000), ("usr/lib/b.so", 500), "etc/", ("etc/conf", 10)],
        [("usr/lib/a.so", 2000), ("usr/bin/tool", 300), ("etc/.wh.conf", 0)],
        [("usr/lib/.wh.b.so", 0), ("tmp/x", 7)],
    ]
    m = explore(sources(*layers))
    usr, lib = m.find("/usr"), m.find("/usr/lib")
    assert usr is not None and lib is not None
    assert [usr.size(i) for i in range(3)] == [1500, 2800, 2300]
    assert [m.root.size(i) for i in range(3)] == [1510, 2800, 2307]
    # the tree as of layer 1, all open: the removed /etc/conf shows (marked D), layer 2's /tmp does not
    rows = [(n.path, d, n.mark(1)) for n, d in m.rows(1)]
    assert rows == [("/etc", 0, None), ("/etc/conf", 1, "D"), ("/usr", 0, None), ("/usr/bin", 1, "A"),
                    ("/usr/bin/tool", 2, "A"), ("/usr/lib", 1, None), ("/usr/lib/a.so", 2, "M"),
                    ("/usr/lib/b.so", 2, None)]
    assert [n.path for n, _ in m.rows(1, only_changes=True)] == [
        "/etc", "/etc/conf", "/usr", "/usr/bin", "/usr/bin/tool", "/usr/lib", "/usr/lib/a.so"]
    assert [n.path for n, _ in m.rows(1, expanded={usr})] == ["/etc", "/usr", "/usr/bin", "/usr/lib"]
    # cumulative at layer 2: against layer 0
    cum = {n.path: m.cumulative_mark(n, 2) for n, _ in m.rows(2, CUMULATIVE, only_changes=True)}
    assert cum == {"/etc": None, "/etc/conf": "D", "/tmp": "A", "/tmp/x": "A", "/usr": None, "/usr/bin": "A",
                   "/usr/bin/tool": "A", "/usr/lib": None, "/usr/lib/a.so": "M", "/usr/lib/b.so": "D"}
    assert [n.path for n, _ in m.rows(2, ALL, query="SO", expanded=set())] == [
        "/usr", "/usr/lib", "/usr/lib/a.so", "/usr/lib/b.so"]
    a = m.find("/usr/lib/a.so")
    assert a is not None and a.wasted(0) and not a.wasted(1)
    assert m.wasted_bytes == [1510, 0, 0]
    assert [(l.added, l.modified, l.removed, l.content_size) for l in m.layers] == [
        (3, 0, 0, 1510), (1, 1, 1, 2300), (1, 0, 1, 7)]


def test_the_difference_of_two_images_as_a_model(tmp_path: Path) -> None:
    from builder.analyze.diff import diff_explorer, diff_images
    from builder.analyze.source import open_image
    from tests.builder.analyze_fixtures import APP_LAYERS
    from tests.builder.test_analyze_dive import docker_archive

    for n, (la, lb) in enumerate([(APP_LAYERS[:3], APP_LAYERS), (APP_LAYERS, APP_LAYERS[:2]),
                                  (random_layers(7), random_layers(8)), (random_layers(11), random_layers(12))]):
        docker_archive(la, tmp_path / f"a{n}.tar")
        docker_archive(lb, tmp_path / f"b{n}.tar")
        a, b = open_image(str(tmp_path / f"a{n}.tar"))[0], open_image(str(tmp_path / f"b{n}.tar"))[0]
        model = diff_explorer(a, b)
        expected = {(f.path, f.change) for f in diff_images(a, b).files}
        assert model_sets(model)[1] == expected, n
