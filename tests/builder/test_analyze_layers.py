"""The analysis engine on layer tars built here, every figure computed by hand in the comments."""

from __future__ import annotations

import io
import math
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.analyze.diff import final_state
from builder.analyze.layers import FileRef, LayerSource, analyze_layers
from builder.analyze.tree import normalize, read_entries
from builder.errors import ImageFormatError
from tests.builder.analyze_fixtures import layer_tar, sources

# dive's own efficiency example, with the directory members a real layer has:
#   L0 etc/nginx/nginx.conf 2000, etc/nginx/public 3000
#   L1 etc/nginx/nginx.conf 5000, etc/athing 10000
#   L2 whiteout etc/nginx (a directory holding 5000 + 3000 below)
NGINX = (
    ["etc/", "etc/nginx/", ("etc/nginx/nginx.conf", 2000), ("etc/nginx/public", 3000)],
    ["etc/", "etc/nginx/", ("etc/nginx/nginx.conf", 5000), ("etc/athing", 10000)],
    ["etc/", ("etc/.wh.nginx", 0)],
)


def test_dive_figures_on_dives_example() -> None:
    r = analyze_layers(sources(*NGINX))
    # dive's leaves: nginx.conf [2000, 5000], public [3000], athing [10000], nginx [8000 (whiteout of a dir)]
    assert r.dive_efficiency == (2000 + 3000 + 10000 + 8000) / (7000 + 3000 + 10000 + 8000)
    assert r.dive_wasted_bytes == 7000  # both copies of nginx.conf, the surviving one included
    assert r.size_bytes == 20000 and r.user_size_bytes == 15000
    assert r.dive_user_wasted_percent == 7000 / 15000
    assert [(i.path, i.cumulative_size, i.minimum_size, i.layers) for i in r.inefficiencies] == [
        ("/etc/nginx/nginx.conf", 7000, 2000, (0, 1))]


def test_corrected_figures_on_dives_example() -> None:
    r = analyze_layers(sources(*NGINX))
    # L0: nginx.conf 2000 overwritten by L1, public 3000 deleted by L2; L1: nginx.conf 5000 deleted by L2
    assert [layer.wasted_bytes for layer in r.layers] == [5000, 5000, 0]
    assert r.wasted_bytes == 10000 == r.size_bytes - r.final_size_bytes
    assert r.final_size_bytes == 10000
    assert r.user_wasted_bytes == 5000 and r.user_wasted_percent == 5000 / 15000
    assert [layer.content_size for layer in r.layers] == [5000, 15000, 0]
    assert r.largest_files == (FileRef("/etc/athing", 10000, 1),)
    assert r.wasted_files == (FileRef("/etc/nginx/nginx.conf", 5000, 1), FileRef("/etc/nginx/public", 3000, 0),
                              FileRef("/etc/nginx/nginx.conf", 2000, 0))


def test_file_lists_per_layer() -> None:
    l0, l1, l2 = analyze_layers(sources(*NGINX)).layers
    assert l0.added == (FileRef("/etc/nginx/nginx.conf", 2000, 0), FileRef("/etc/nginx/public", 3000, 0))
    assert l0.modified == () and l0.removed == ()
    assert l1.added == (FileRef("/etc/athing", 10000, 1),)
    assert l1.modified == (FileRef("/etc/nginx/nginx.conf", 5000, 1),)
    assert l2.added == l2.modified == ()
    assert l2.removed == (FileRef("/etc/nginx", 8000, 1),) and l2.removed_files == 2
    assert l1.largest == (FileRef("/etc/athing", 10000, 1), FileRef("/etc/nginx/nginx.conf", 5000, 1))


def test_sizes_of_the_tar_streams() -> None:
    srcs = sources(*NGINX)
    r = analyze_layers(srcs)
    for layer, src in zip(r.layers, srcs):
        data = src.open().read()
        assert layer.uncompressed_size == len(data)
        assert layer.compressed_size == len(data) // 2
        assert layer.created_by == f"step {layer.index}"


def test_deleting_a_file_later_is_all_waste() -> None:
    # dive: a/f [100, 0 (whiteout of a file)] -> efficiency 0/100, wasted 100
    r = analyze_layers(sources(["a/", ("a/f", 100)], ["a/", ("a/.wh.f", 0)]), base_layers=0)
    assert r.dive_efficiency == 0.0 and r.dive_wasted_bytes == 100
    assert r.wasted_bytes == 100 and r.final_size_bytes == 0
    assert r.user_wasted_bytes == 100 and r.user_wasted_percent == 1.0
    assert r.layers[1].removed == (FileRef("/a/f", 100, 0),) and r.layers[1].removed_files == 1


def test_base_layer_waste_is_not_user_waste() -> None:
    r = analyze_layers(sources(["a/", ("a/f", 100)], ["a/", ("a/.wh.f", 0)], [("b", 7)]))
    assert r.wasted_bytes == 100 and r.user_wasted_bytes == 0 and r.user_size_bytes == 7
    assert r.dive_user_wasted_percent == 100 / 7


def test_base_layers_change_the_corrected_figures_not_dives() -> None:
    # dive's user bytes are always those after the first layer: (30 + 7) here
    r = analyze_layers(sources([("a", 100)], [("a", 30)], [("b", 7)]), base_layers=2)
    assert r.user_size_bytes == 7 and r.user_wasted_bytes == 0 and r.wasted_bytes == 100
    assert r.dive_wasted_bytes == 130 and r.dive_user_wasted_percent == 130 / 37


@pytest.mark.parametrize("explicit, efficiency", [(True, (10 + 5 + 0) / (10 + 5 + 15)), (False, 1.0)])
def test_dive_sizes_a_deleted_dir_only_if_its_last_layer_listed_it(explicit: bool, efficiency: float) -> None:
    # L1 adds d/y with or without a "d/" member; dive's stacked tree then holds d as a directory
    # (whiteout of d counts 10 + 5) or as an empty non-directory (counts 0). L3 re-adds an empty d/.
    layers = (["d/", ("d/x", 10)], (["d/"] if explicit else []) + [("d/y", 5)], [(".wh.d", 0)], ["d/"])
    r = analyze_layers(sources(*layers))
    assert r.dive_efficiency == efficiency
    assert r.wasted_bytes == 15 and [layer.wasted_bytes for layer in r.layers] == [10, 5, 0, 0]


def test_opaque_directory_hides_everything_below() -> None:
    r = analyze_layers(sources(["a/", ("a/x", 7), ("a/y", 3)], ["a/", ("a/.wh..wh..opq", 0), ("a/z", 4)]))
    assert r.layers[1].removed_files == 2
    assert {f.path for f in r.layers[1].removed} == {"/a/x", "/a/y"}
    assert r.wasted_bytes == 10 and r.final_size_bytes == 4
    assert r.layers[1].added == (FileRef("/a/z", 4, 1),)
    # dive ignores opaque markers: every path has one copy
    assert r.dive_efficiency == 1.0 and r.dive_wasted_bytes == 0


def test_same_path_twice_in_one_tar() -> None:
    r = analyze_layers(sources([("f", 5), ("f", 8)]))
    assert r.layers[0].added == (FileRef("/f", 8, 0),)
    assert r.layers[0].content_size == 13 and r.final_size_bytes == 8 and r.wasted_bytes == 5


def test_a_file_replacing_a_directory_hides_its_subtree() -> None:
    r = analyze_layers(sources(["p/", ("p/q", 6)], [("p", 2)]))
    assert r.layers[1].modified == (FileRef("/p", 2, 1),)
    assert r.wasted_bytes == 6 and r.final_size_bytes == 2


def test_symlinks_count_as_files_of_size_zero() -> None:
    r = analyze_layers(sources(["bin/", ("bin/busybox", 50), ("bin/sh", "->busybox")]))
    assert r.layers[0].added == (FileRef("/bin/busybox", 50, 0), FileRef("/bin/sh", 0, 0))
    assert r.final_size_bytes == 50


def test_dive_ends_a_layers_visit_at_a_whiteout_of_a_missing_path() -> None:
    # L1's leaves in dive's order: a/.wh.nothere (missing below: the visit ends), a/f, z/q (never recorded).
    # dive: /a/f [100]; /a/nothere enters the sums with no copy and its "unseen" minimum -1
    r = analyze_layers(sources(["a/", ("a/f", 100)], [("a/.wh.nothere", 0), ("a/f", 40), ("z/q", 9)]))
    assert r.dive_efficiency == (100 - 1) / 100 and r.dive_wasted_bytes == 0
    assert r.wasted_bytes == 100 and r.final_size_bytes == 49  # the corrected figures see every member


def test_dive_looks_up_a_first_layer_whiteout_in_that_layer() -> None:
    # L0's leaves in order: .wh.x (x is a directory of L0 holding 10: records 10), x/a 10, y 10; L1: y 5
    r = analyze_layers(sources(["x/", ("x/a", 10), (".wh.x", 0), ("y", 10)], [("y", 5)]))
    assert r.dive_efficiency == (10 + 10 + 5) / (10 + 10 + 15) and r.dive_wasted_bytes == 15


def test_dive_grafts_a_layer_in_name_order() -> None:
    # L1: "-d" sorts before ".wh.-d", so dive records and adds -d (100), then the whiteout (missing
    # below: the visit ends) removes it; L2's whiteout of -d finds nothing and ends L2's visit before m
    r = analyze_layers(sources([("k", 1)], [(".wh.-d", 0), ("-d", 100)], [(".wh.-d", 0), ("m", 7)]))
    assert r.dive_efficiency == (1 + 100) / (1 + 100) and r.dive_wasted_bytes == 0
    assert r.final_size_bytes == 1 + 7 and r.wasted_bytes == 100


def test_dive_nests_a_path_below_a_file_of_the_same_layer() -> None:
    # L0 lists a/x as a file (5) and then a/x/p: dive keeps x a file holding p, and only p is a leaf.
    # L1's whiteout of a/x (not a directory) counts 0; L2 adds a/x 50: /a/x [0, 50], /a/x/p [1000]
    r = analyze_layers(sources([("a/x", 5), ("a/x/p", 1000)], [("a/.wh.x", 0)], [("a/x", 50)]))
    assert r.dive_efficiency == (0 + 1000) / (50 + 1000) and r.dive_wasted_bytes == 50


def test_hard_links_count_their_header_size_zero() -> None:
    # dive: /b/big [1000, 10], /lnk [0, 0]; corrected: big's first copy (1000) is hidden
    r = analyze_layers(sources(["b/", ("b/big", 1000), ("lnk", "=>b/big")], [("b/big", 10), ("lnk", "=>b/big")]))
    assert r.dive_efficiency == (10 + 0) / (1010 + 0) and r.dive_wasted_bytes == 1010
    assert r.wasted_bytes == 1000 and r.final_size_bytes == 10


def test_a_hard_link_keeps_a_deleted_or_overwritten_files_bytes_visible() -> None:
    # L0 stores big (1000) and lnk, a hard link to it; L1 deletes big: lnk still shows the 1000 bytes
    layer0 = ["b/", ("b/big", 1000), ("lnk", "=>b/big")]
    r = analyze_layers(sources(layer0, [("b/.wh.big", 0)]))
    assert r.wasted_bytes == 0 and r.final_size_bytes == 1000 and r.largest_files == (FileRef("/lnk", 1000, 0),)
    # L1 overwrites big (5): the old bytes are still lnk's; they are wasted once lnk goes too
    r = analyze_layers(sources(layer0, [("b/big", 5)]))
    assert r.wasted_bytes == 0 and r.final_size_bytes == 1005
    r = analyze_layers(sources(layer0, [("b/big", 5), (".wh.lnk", 0)]))
    assert r.wasted_bytes == 1000 and r.final_size_bytes == 5 and [layer.wasted_bytes for layer in r.layers] == [1000, 0]
    assert r.user_wasted_bytes == 0 and r.size_bytes == r.final_size_bytes + r.wasted_bytes
    # a link out of the root or to nothing links no bytes
    r = analyze_layers(sources([("a", 3), ("x", "=>../../a"), ("y", "=>nothing")], [(".wh.a", 0)]))
    assert r.wasted_bytes == 3 and r.final_size_bytes == 0


def test_waste_over_no_user_bytes_is_infinite_as_in_dive() -> None:
    from builder.analyze.ci import Thresholds, evaluate
    from builder.analyze.report import render_table, to_json

    r = analyze_layers(sources([("a", 100)], [(".wh.a", 0)]))
    assert r.user_size_bytes == 0 and r.dive_wasted_bytes == 100 and r.dive_user_wasted_percent == math.inf
    assert to_json(r)["dive_user_wasted_percent"] is None and "User wasted (dive):           +Inf %" in render_table(r)
    assert evaluate(r, Thresholds(highest_user_wasted_percent=0.5))[2].status == "FAIL"  # as dive's +Inf
    assert analyze_layers(sources([("a", 100)])).dive_user_wasted_percent == 0.0  # dive's NaN passes every rule


def test_empty_image() -> None:
    r = analyze_layers([])
    assert r.dive_efficiency == 1.0 and r.size_bytes == 0 and r.layers == ()


def test_escaping_member_is_a_format_error() -> None:
    with pytest.raises(ImageFormatError, match="escapes the layer root"):
        analyze_layers(sources([("../etc/passwd", 1)]))


def test_garbage_is_a_format_error() -> None:
    bad = LayerSource(open=lambda: io.BytesIO(b"not a tar" * 100), digest="sha256:abc")
    with pytest.raises(ImageFormatError, match=r"layer 0 \(sha256:abc\)"):
        analyze_layers([bad])


def test_truncated_tar_is_a_format_error() -> None:
    data = layer_tar([("big", 10000)])[:3000]
    with pytest.raises(ImageFormatError):
        analyze_layers([LayerSource(open=lambda: io.BytesIO(data))])


@pytest.mark.parametrize("name, path", [("./a/b", "a/b"), ("/a//b/", "a/b"), ("a/./c/../b", "a/b"), (".", "")])
def test_normalize(name: str, path: str) -> None:
    assert normalize(name, where="t") == path


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_links_in_every_tar_format(fmt: int) -> None:
    long_dir = "/".join(["d" * 40] * 3)  # 122 characters: ustar prefix, GNU L, pax path
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        ti = tarfile.TarInfo(f"{long_dir}/file")
        ti.size = 3
        tar.addfile(ti, io.BytesIO(b"abc"))
        link = tarfile.TarInfo(f"{long_dir}/hard")
        target = f"{long_dir}/file" if fmt != tarfile.USTAR_FORMAT else "s"  # ustar: links <= 100 bytes
        link.type, link.linkname = tarfile.LNKTYPE, target
        tar.addfile(link)
        sym = tarfile.TarInfo("s")
        sym.type, sym.linkname = tarfile.SYMTYPE, "x" * 150 if fmt != tarfile.USTAR_FORMAT else "x"
        tar.addfile(sym)
    data = buf.getvalue()
    entries = list(read_entries(io.BytesIO(data), where="t"))
    assert [(e.path, e.kind, e.size) for e in entries] == [(f"{long_dir}/file", "file", 3),
                                                           (f"{long_dir}/hard", "hardlink", 0), ("s", "symlink", 0)]
    assert entries[1].linkname == target
    r = analyze_layers([LayerSource(open=lambda: io.BytesIO(data))])
    assert r.layers[0].uncompressed_size == len(data) and r.final_size_bytes == 3


def test_bad_checksum_is_a_format_error() -> None:
    data = bytearray(layer_tar([("f", 1)]))
    data[0] ^= 1
    with pytest.raises(ImageFormatError, match="bad header checksum at byte 0"):
        list(read_entries(io.BytesIO(bytes(data)), where="t"))


def test_paths_reappear_after_a_deleted_or_emptied_directory() -> None:
    r = analyze_layers(sources(["a/", ("a/x", 5), "a/b/", ("a/b/old", 1)], [(".wh.a", 0)], [("a/y", 3)]))
    assert r.final_size_bytes == 3 and r.wasted_bytes == 6 and r.layers[2].added == (FileRef("/a/y", 3, 2),)
    r = analyze_layers(sources(["a/", ("a/x", 5), "a/b/", ("a/b/old", 1)], ["a/", ("a/.wh..wh..opq", 0)],
                               [("a/b/c", 2)]))
    assert r.final_size_bytes == 2 and r.wasted_bytes == 6 and r.layers[2].added == (FileRef("/a/b/c", 2, 2),)
    assert [f.path for f in r.largest_files] == ["/a/b/c"]


PATHS = ["a", "a/x", "a/y", "a/b", "a/b/z", "c", "c/w"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["file", "dir", "whiteout", "opaque"]), st.sampled_from(PATHS),
                                   st.integers(0, 50)), max_size=6), min_size=1, max_size=4))
def test_engine_agrees_with_a_plain_model_of_the_final_filesystem(layers: list) -> None:
    """Random layer stacks: the engine's final size, and total = final + wasted, against diff's
    independent dict-based model of the stacked filesystem."""
    tars = []
    for ops in layers:
        members: list = []
        for kind, path, size in ops:
            parent = path.rpartition("/")[0]
            if kind == "file":
                members.append((path, size))
            elif kind == "dir":
                members.append(path + "/")
            elif kind == "whiteout":
                members.append(((parent + "/" if parent else "") + ".wh." + path.rpartition("/")[2], 0))
            else:
                members.append((path + "/.wh..wh..opq", 0))
        tars.append(layer_tar(members))
    r = analyze_layers([LayerSource(open=lambda t=t: io.BytesIO(t)) for t in tars])
    model = final_state([(lambda t=t: io.BytesIO(t), "t") for t in tars])
    assert r.final_size_bytes == sum(f.size for f in model.values() if f.kind == "file")
    assert r.size_bytes == r.final_size_bytes + r.wasted_bytes == sum(l.content_size for l in r.layers)
    assert sum(l.wasted_bytes for l in r.layers) == r.wasted_bytes
    # dive's score is at most 1; a whiteout of a missing path adds dive's -1 to the minimums, so
    # it can go below 0 (dive 0.13 prints -1 for [a 1], [a 0, c/.wh.w])
    assert r.dive_efficiency <= 1.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["file", "link", "whiteout", "opaque"]), st.sampled_from(PATHS),
                                   st.sampled_from(PATHS)), max_size=6), min_size=1, max_size=4))
def test_every_stored_byte_is_visible_or_wasted_with_hard_links(layers: list) -> None:
    """Random stacks with hard links: each file's bytes end up counted once, as visible or as wasted."""
    tars = []
    for ops in layers:
        members: list = []
        for kind, path, other in ops:
            head, _, base = path.rpartition("/")
            members.append({"file": (path, 1 + len(other)), "link": (path, "=>" + other),
                            "whiteout": ((head + "/" if head else "") + ".wh." + base, 0),
                            "opaque": (path + "/.wh..wh..opq", 0)}[kind])
        tars.append(layer_tar(members))
    r = analyze_layers([LayerSource(open=lambda t=t: io.BytesIO(t)) for t in tars])
    assert r.size_bytes == r.final_size_bytes + r.wasted_bytes == sum(l.content_size for l in r.layers)
    assert sum(l.wasted_bytes for l in r.layers) == r.wasted_bytes and min(l.wasted_bytes for l in r.layers) >= 0
