"""The comparer itself: layers applied with whiteouts and opaque directories, hard-link groups,
and differences reported (a comparer that saw none would make the suite pass vacuously)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.conformance import compare
from tests.conformance.snapshot import snapshot

Entry = tuple[str, str, bytes | str | None]  # (name, kind: f d l h, data / link target)


def _layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            elif kind in "lh":
                ti.type, ti.linkname = (tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE), str(data)
                tar.addfile(ti)
            else:
                raw = data if isinstance(data, bytes) else b""
                ti.size, ti.mode = len(raw), 0o644
                tar.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


def archive(path: Path, layers: list[list[Entry]], history: list[list[object]], env: list[str] | None = None) -> str:
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        names = []
        for i, entries in enumerate(layers):
            names.append(f"{i}/layer.tar")
            add(names[-1], _layer(entries))
        hist = [{"created_by": c, "empty_layer": e} for c, e in history]
        add("config.json", json.dumps({"config": {"Env": env}, "history": hist}).encode())
        add("manifest.json", json.dumps([{"Config": "config.json", "Layers": names}]).encode())
    return str(path)


BASE: list[Entry] = [("bin", "l", "usr/bin"), ("usr", "d", None), ("usr/bin", "d", None), ("usr/bin/sh", "f", b"sh"),
                     ("etc", "d", None), ("etc/a", "f", b"a"), ("etc/conf.d", "d", None), ("etc/conf.d/x", "f", b"x")]


def test_layers_apply_whiteouts_opaque_dirs_and_hard_links(tmp_path: Path) -> None:
    top: list[Entry] = [("etc", "d", None), ("etc/.wh.a", "f", b""), ("etc/conf.d", "d", None),
                        ("etc/conf.d/.wh..wh..opq", "f", b""), ("etc/conf.d/y", "f", b"y"),
                        ("usr/bin/sh2", "h", "usr/bin/sh")]
    snap = snapshot(archive(tmp_path / "a.tar", [BASE, top], [["import", False], ["RUN x", False]]))
    files = snap["files"]
    assert "etc/a" not in files and "etc/conf.d/x" not in files and "etc/conf.d/y" in files
    assert files["bin"][0] == "symlink" and files["bin"][6] == "usr/bin"
    assert files["usr/bin/sh2"][8] == files["usr/bin/sh"][8] == "usr/bin/sh"
    assert snap["layers"] == [sorted(["A usr/bin/sh2", "A etc/conf.d/y", "C etc", "C etc/conf.d", "D etc/a",
                                      "O etc/conf.d"])]
    assert snap["history"] == [["RUN x", False]]


def test_differences_name_each_changed_field_and_layer_entry(tmp_path: Path) -> None:
    hist = [["import", False], ["RUN x", False]]
    ours = snapshot(archive(tmp_path / "a.tar", [BASE, [("bin", "d", None), ("bin/t", "f", b"1")]], hist))
    theirs = snapshot(archive(tmp_path / "b.tar", [BASE, [("usr/bin", "d", None), ("usr/bin/t", "f", b"1")]], hist,
                              env=["PATH=/bin"]))
    diffs = compare.differences(ours, theirs)
    assert "file bin: type pybuild 'dir', peer 'symlink'" in diffs
    assert "file bin/t: only in pybuild" in diffs and "file usr/bin/t: only in peer" in diffs
    assert "step 0 (RUN x): only pybuild: C bin" in diffs and "step 0 (RUN x): only peer: C usr/bin" in diffs
    assert any(d.startswith("config Env:") for d in diffs)
    assert compare.differences(ours, ours) == []
