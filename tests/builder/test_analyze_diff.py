"""`pybuild diff` on two images built here: every file change and size delta known by hand."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from builder.analyze.diff import diff_images
from builder.oci import mutate
from builder.oci.image import EMPTY
from builder.oci.layout import write_oci_layout
from builder.oci.model import ContainerConfig, History
from builder.store import Store
from tests.builder.analyze_fixtures import layer_tar
from tests.conftest import pybuild

BASE = ["etc/", ("etc/a", 10), ("etc/b", 20), "usr/", ("usr/x", 5), ("usr/link", "->x")]


def make(store: Store, tag: str, *layers: list, env: tuple[str, ...] = ()) -> str:
    recs = [store.blob_layer(store.put_tar(io.BytesIO(layer_tar(m)))) for m in layers]
    image = mutate.append_layers(EMPTY, *recs, history=[History(created_by=f"step {i}") for i in range(len(recs))])
    image = mutate.with_config(image, ContainerConfig(env=env))
    return store.put_image(image, [tag])


def test_diff_names_every_change(store_root: Path, tmp_path: Path) -> None:
    store = Store.open(store_root)
    make(store, "v:1", BASE, env=("A=1",))
    # B: the same base layer, then: etc/a grows to 15 bytes, etc/b is deleted, new/c appears,
    # usr/link points elsewhere; usr/x is untouched
    make(store, "v:2", BASE, ["etc/", ("etc/a", 15), ("etc/.wh.b", 0), "new/", ("new/c", 7), "usr/",
                              ("usr/link", "->y")], env=("A=2",))
    d = diff_images(store.resolve("v:1"), store.resolve("v:2"))
    assert [(f.path, f.change, f.size_a, f.size_b, f.detail) for f in d.files] == [
        ("/etc/a", "changed", 10, 15, "content"), ("/etc/b", "removed", 20, 0, ""), ("/new/c", "added", 0, 7, ""),
        ("/usr/link", "changed", 0, 0, "link x -> y")]
    assert d.bytes_delta == 5 - 20 + 7
    assert [p.same for p in d.layers] == [True, False] and d.layers[1].a is None and d.layers[1].files == ()
    assert d.layers[1].b is not None and d.layers[1].b.created_by == "step 1"
    assert ("config.Env", ["A=1"], ["A=2"]) in d.config


def test_same_size_different_content(store_root: Path) -> None:
    store = Store.open(store_root)
    a = store.blob_layer(store.put_tar(io.BytesIO(layer_tar([("f", 3)]))))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("f")
        ti.size = 3
        tar.addfile(ti, io.BytesIO(b"yyy"))
    b = store.blob_layer(store.put_tar(io.BytesIO(buf.getvalue())))
    d = diff_images(mutate.append_layers(EMPTY, a), mutate.append_layers(EMPTY, b))
    assert [(f.path, f.change, f.delta, f.detail) for f in d.files] == [("/f", "changed", 0, "content")]


def test_cli_json_and_text(store_root: Path, tmp_path: Path) -> None:
    store = Store.open(store_root)
    make(store, "v:1", BASE)
    make(store, "v:2", BASE, [("etc/a", 12)])
    write_oci_layout(store.resolve("v:2"), tmp_path / "layout")
    data = json.loads(pybuild("diff", "--json", "v:1", str(tmp_path / "layout")).stdout)
    assert data["files"] == [{"path": "/etc/a", "change": "changed", "size_a": 10, "size_b": 12, "detail": "content"}]
    assert data["bytes_delta"] == 2
    text = pybuild("diff", "v:1", "v:2").stdout
    assert " ~ /etc/a  10 -> 12 (+2)  [content]" in text and "Files: 0 added, 0 removed, 1 changed" in text
    bad = pybuild("diff", "v:1", "nosuch", check=False)
    assert bad.returncode == 1 and "nosuch" in bad.stderr and "Traceback" not in bad.stderr


def test_a_differing_layer_pair_lists_its_member_changes(store_root: Path, tmp_path: Path) -> None:
    store = Store.open(store_root)
    make(store, "l:1", BASE, ["etc/", ("etc/a", 15), ("etc/.wh.b", 0), ("tmp/x", 4)])
    make(store, "l:2", BASE, ["etc/", ("etc/a", 16), ("usr/.wh.x", 0), ("tmp/y", 9)])
    d = diff_images(store.resolve("l:1"), store.resolve("l:2"))
    assert [p.same for p in d.layers] == [True, False] and d.layers[0].files == ()
    assert [(f.path, f.change, f.size_a, f.size_b, f.detail) for f in d.layers[1].files] == [
        ("/etc/.wh.b", "removed", 0, 0, "whiteout"), ("/etc/a", "changed", 15, 16, "content"),
        ("/tmp/x", "removed", 4, 0, ""), ("/tmp/y", "added", 0, 9, ""), ("/usr/.wh.x", "added", 0, 0, "whiteout")]
    a, b = store.resolve("l:1").layers()[1], store.resolve("l:2").layers()[1]
    data = json.loads(pybuild("diff", "--json", "l:1", "l:2").stdout)
    assert data["layers"][1]["a"] == {"diff_id": str(a.diff_id), "digest": str(a.digest), "size": a.size,
                                      "created_by": "step 1"}
    assert data["layers"][1]["files"][1] == {"path": "/etc/a", "change": "changed", "size_a": 15, "size_b": 16,
                                             "detail": "content"}
    assert data["layers"][1]["b"]["diff_id"] == str(b.diff_id) and data["layers"][0]["files"] == []
    text = pybuild("diff", "l:1", "l:2").stdout
    assert " !  1  A: " in text and "          ~ /etc/a  15 -> 16 (+1)  [content]" in text


def test_mode_and_owner_changes_are_file_changes(store_root: Path) -> None:
    store = Store.open(store_root)
    make(store, "m:1", ["bin/", ("bin/tool", 4), ("bin/conf", 3), ("bin/same", 2)])
    make(store, "m:2", ["bin/", ("bin/tool", 4, 0o755), ("bin/conf", 5, 0o644, 1000), ("bin/same", 2)])
    d = diff_images(store.resolve("m:1"), store.resolve("m:2"))
    assert [(f.path, f.change, f.size_a, f.size_b, f.detail) for f in d.files] == [
        ("/bin/conf", "changed", 3, 5, "content, owner 0:0 -> 1000:0"),
        ("/bin/tool", "changed", 4, 4, "mode 644 -> 755")]


def naive_final_state(layers: list[bytes]) -> dict:
    """The stacked filesystem by brute force: every whiteout and every non-directory scans all paths."""
    from builder.analyze.diff import FileState
    from builder.analyze.tree import read_entries

    files: dict = {}
    for data in layers:
        entries = list(read_entries(io.BytesIO(data), where="t", digests=True))
        for e in entries:
            if e.kind in ("whiteout", "opaque"):
                prefix = e.path + "/" if e.path else ""
                for p in [p for p in files if p.startswith(prefix) or (e.kind == "whiteout" and p == e.path)]:
                    del files[p]
        for e in entries:
            if e.kind in ("whiteout", "opaque"):
                continue
            parts = e.path.split("/")
            for i in range(1, len(parts)):
                up = "/".join(parts[:i])
                if up in files and files[up].kind != "dir":
                    del files[up]
            if e.kind != "dir":
                for p in [p for p in files if p.startswith(e.path + "/")]:
                    del files[p]
            files[e.path] = FileState(e.kind, e.size, e.linkname, e.digest, e.meta)
    return files


NAMES = ["a", "a/x", "a/x/p", "a/y", "b", "b/z", "c/w/v", "ab"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["file", "dir", "link", "whiteout", "opaque"]),
                                   st.sampled_from(NAMES), st.integers(0, 9)), max_size=7), min_size=1, max_size=4))
def test_final_state_agrees_with_a_brute_force_model(layers: list) -> None:
    """The indexed final_state (a whiteout costs what it hides) against a scan of every path."""
    from builder.analyze.diff import final_state

    tars = []
    for ops in layers:
        members: list = []
        for kind, path, size in ops:
            head, _, base = path.rpartition("/")
            members.append({"file": (path, size), "dir": path + "/", "link": (path, "->" + base),
                            "whiteout": ((head + "/" if head else "") + ".wh." + base, 0),
                            "opaque": (path + "/.wh..wh..opq", 0)}[kind])
        tars.append(layer_tar(members))
    assert final_state([(lambda t=t: io.BytesIO(t), "t") for t in tars]) == naive_final_state(tars)


def test_layers_that_differ_only_in_mtimes_are_said_so(store_root: Path) -> None:
    store = Store.open(store_root)

    def layer(mtime: int) -> object:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            ti = tarfile.TarInfo("f")
            ti.size, ti.mtime = 3, mtime
            tar.addfile(ti, io.BytesIO(b"xxx"))
        return store.blob_layer(store.put_tar(io.BytesIO(buf.getvalue())))

    store.put_image(mutate.append_layers(EMPTY, layer(1000)), ["m:1"])
    store.put_image(mutate.append_layers(EMPTY, layer(2000)), ["m:2"])
    d = diff_images(store.resolve("m:1"), store.resolve("m:2"))
    assert [(p.same, p.metadata_only) for p in d.layers] == [(False, True)] and d.files == ()
    out = pybuild("diff", "m:1", "m:2", env={"PYBUILD_ROOT": str(store_root)}).stdout
    assert "the layers differ only in mtimes" in out
    data = json.loads(pybuild("diff", "--json", "m:1", "m:2", env={"PYBUILD_ROOT": str(store_root)}).stdout)
    assert data["layers"][0]["metadata_only"] is True
