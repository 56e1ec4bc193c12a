"""`pybuild diff` on two images built here: every file change and size delta known by hand."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from builder.analyze_diff import diff_images
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
    assert [p.same for p in d.layers] == [True, False] and d.layers[1].a == ""
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
