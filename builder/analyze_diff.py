"""`pybuild diff A B`: two images compared layer by layer, file by file and config field by field.

Each image's final filesystem is built in one streaming pass (OCI whiteouts and opaque
directories applied), keeping per path its kind, size, link target and content sha256; an index
of the paths below each path makes a whiteout cost the size of what it hides, not of the image.
Layers are paired by position; a pair with the same diff_id is the same layer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from builder.analyze_report import human_size
from builder.analyze_tree import DIR, OPAQUE, WHITEOUT, CountingReader, read_entries

if TYPE_CHECKING:
    from builder.oci.image import Image


@dataclass(frozen=True, slots=True)
class FileState:
    kind: str
    size: int
    linkname: str = ""
    digest: str = ""
    meta: str = ""  # "mode uid:gid"


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    change: str  # added | removed | changed
    size_a: int
    size_b: int
    detail: str = ""  # what differs for a change: content, kind, link target

    @property
    def delta(self) -> int:
        return self.size_b - self.size_a


@dataclass(frozen=True, slots=True)
class LayerPair:
    index: int
    a: str  # "diff_id  size  created_by" or "" when that image has fewer layers
    b: str
    same: bool


@dataclass(frozen=True, slots=True)
class ImageDiff:
    a: str
    b: str
    layers: tuple[LayerPair, ...]
    files: tuple[FileChange, ...]
    config: tuple[tuple[str, Any, Any], ...]  # (field, value in A, value in B)

    @property
    def bytes_delta(self) -> int:
        return sum(f.delta for f in self.files)


def final_files(image: "Image", label: str = "") -> dict[str, FileState]:
    """The image's final filesystem: path (no leading slash) -> FileState (directories included)."""
    prefix = f"{label}: " if label else ""
    return final_state([(layer.open_uncompressed, f"{prefix}layer {i} ({layer.digest})") for i, layer in
                        enumerate(image.layers())])


def final_state(layers: list[tuple[Callable[[], BinaryIO], str]]) -> dict[str, FileState]:
    """The filesystem that uncompressed layer tars (openers, lowest first) stack up to."""
    files: dict[str, FileState] = {}
    below: dict[str, set[str]] = {}  # a path -> the paths directly below it that lead to files

    def drop_below(path: str) -> None:  # every path under `path`, not `path` itself
        stack = list(below.pop(path, ()))
        while stack:
            p = stack.pop()
            files.pop(p, None)
            stack.extend(below.pop(p, ()))

    def drop(path: str) -> None:
        drop_below(path)
        files.pop(path, None)
        head = path.rpartition("/")[0]
        if head in below:
            below[head].discard(path)

    for open_layer, where in layers:
        raw = open_layer()
        try:
            entries = list(read_entries(CountingReader(raw), where=where, digests=True))  # type: ignore[arg-type]
        finally:
            raw.close()
        for e in entries:  # whiteouts and opaque dirs hide the layers below, not this one
            if e.kind == OPAQUE:
                drop_below(e.path)
            elif e.kind == WHITEOUT:
                drop(e.path)
        for e in entries:
            if e.kind in (WHITEOUT, OPAQUE):
                continue
            head, up = e.path, e.path.rpartition("/")[0]
            while True:  # register the path under each parent; a non-directory parent goes
                if up in files and files[up].kind != DIR:
                    drop(up)
                children = below.setdefault(up, set())
                if head in children:
                    break
                children.add(head)
                if not up:
                    break
                head, up = up, up.rpartition("/")[0]
            if e.kind != DIR:  # a non-directory replaces whatever was there, children included
                drop_below(e.path)
            files[e.path] = FileState(e.kind, e.size, e.linkname, e.digest, e.meta)
    return files


def _layer_label(layer: Any, created_by: str) -> str:
    return f"{str(layer.diff_id)[:19]}  {human_size(layer.size):>9}  {created_by}"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def diff_images(a: "Image", b: "Image", *, label_a: str = "A", label_b: str = "B") -> ImageDiff:
    """Compare two images: layers by position, files of the final filesystems, config fields."""
    def made(img: "Image") -> list[str]:
        hist = [h.created_by for h in img.config().history if not h.empty_layer]
        return hist if len(hist) == len(img.layers()) else [""] * len(img.layers())

    la, lb, ha, hb = list(a.layers()), list(b.layers()), made(a), made(b)
    layers = tuple(LayerPair(i, _layer_label(la[i], ha[i]) if i < len(la) else "",
                             _layer_label(lb[i], hb[i]) if i < len(lb) else "",
                             i < len(la) and i < len(lb) and la[i].diff_id == lb[i].diff_id)
                   for i in range(max(len(la), len(lb))))
    fa, fb = final_files(a, label_a), final_files(b, label_b)
    files = []
    for path in sorted(set(fa) | set(fb)):
        x, y = fa.get(path), fb.get(path)
        if x is not None and y is not None and x == y:
            continue
        if x is None:
            assert y is not None
            if y.kind != DIR:
                files.append(FileChange("/" + path, "added", 0, y.size))
        elif y is None:
            if x.kind != DIR:
                files.append(FileChange("/" + path, "removed", x.size, 0))
        elif x.kind != y.kind:
            files.append(FileChange("/" + path, "changed", x.size, y.size, f"kind {x.kind} -> {y.kind}"))
        else:
            details = [f"link {x.linkname} -> {y.linkname}"] if x.linkname != y.linkname else []
            details += ["content"] if (x.digest, x.size) != (y.digest, y.size) else []
            (mode_a, owner_a), (mode_b, owner_b) = (x.meta.split(" ") + [""])[:2], (y.meta.split(" ") + [""])[:2]
            details += [f"mode {mode_a} -> {mode_b}"] if mode_a != mode_b else []
            details += [f"owner {owner_a} -> {owner_b}"] if owner_a != owner_b else []
            files.append(FileChange("/" + path, "changed", x.size, y.size, ", ".join(details)))
    ca, cb = _flat(json.loads(a.raw_config())), _flat(json.loads(b.raw_config()))
    skip = ("rootfs.diff_ids", "history", "created")
    config = tuple((k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb))
                   if ca.get(k) != cb.get(k) and not k.startswith(skip))
    return ImageDiff(label_a, label_b, layers, tuple(files), config)


def render_diff(d: ImageDiff, *, limit: int = 200) -> str:
    lines = [f"--- {d.a}", f"+++ {d.b}", "", "Layers:"]
    for p in d.layers:
        mark = "=" if p.same else "!"
        lines.append(f" {mark} {p.index:>2}  A: {p.a or '(none)'}")
        if not p.same:
            lines.append(f"        B: {p.b or '(none)'}")
    counts = {c: sum(f.change == c for f in d.files) for c in ("added", "removed", "changed")}
    lines += ["", f"Files: {counts['added']} added, {counts['removed']} removed, {counts['changed']} changed; "
              f"size {'+' if d.bytes_delta >= 0 else ''}{d.bytes_delta} bytes"]
    sign = {"added": "+", "removed": "-", "changed": "~"}
    for f in d.files[:limit]:
        delta = f"{'+' if f.delta >= 0 else ''}{f.delta}"
        lines.append(f" {sign[f.change]} {f.path}  {f.size_a} -> {f.size_b} ({delta})"
                     + (f"  [{f.detail}]" if f.detail else ""))
    if len(d.files) > limit:
        lines.append(f"   ... {len(d.files) - limit} more (--json lists all)")
    lines += ["", "Config:" if d.config else "Config: identical (apart from history, diff_ids, created)"]
    for key, x, y in d.config:
        lines.append(f" ~ {key}: {json.dumps(x)} -> {json.dumps(y)}")
    return "\n".join(lines)


def diff_json(d: ImageDiff) -> dict[str, Any]:
    data = asdict(d)
    data["bytes_delta"] = d.bytes_delta
    data["config"] = [{"field": k, "a": x, "b": y} for k, x, y in d.config]
    return data
