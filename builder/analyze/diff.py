"""`pybuild diff A B`: two images compared layer by layer, file by file and config field by field.

Each image's final filesystem is built in one streaming pass (OCI whiteouts and opaque
directories applied), keeping per path its kind, size, link target and content sha256; an index
of the paths below each path makes a whiteout cost the size of what it hides, not of the image.
Layers are paired by position; a pair with the same diff_id is the same layer, and the members
of a differing pair are compared as the final filesystems are (whiteouts show as such).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import IO, TYPE_CHECKING, Any, Callable

from builder.analyze.report import human_size
from builder.analyze.tree import (DIR, FILE, OPAQUE, WH_OPAQUE, WH_PREFIX, WHITEOUT, CountingReader, TarEntry,
                                  read_entries)

if TYPE_CHECKING:
    from builder.analyze.explore import Explorer
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
class LayerSide:
    """One image's layer at a position."""

    diff_id: str
    digest: str
    size: int  # of the blob as stored (compressed or not)
    created_by: str


@dataclass(frozen=True, slots=True)
class LayerPair:
    index: int
    a: LayerSide | None  # None when that image has fewer layers
    b: LayerSide | None
    same: bool
    files: tuple["FileChange", ...] = ()  # members of the two layers compared (when both exist and differ)

    @property
    def metadata_only(self) -> bool:
        """Two different layer tars with the same members, contents, modes and owners: they differ
        only in what a diff does not show (mtimes, most often, or member order, xattrs)."""
        return not self.same and self.a is not None and self.b is not None and not self.files


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


def final_files(image: "Image", label: str = "",
                members: list[dict[str, FileState]] | None = None) -> dict[str, FileState]:
    """The image's final filesystem: path (no leading slash) -> FileState (directories included);
    each layer's own members are appended to `members` if given."""
    prefix = f"{label}: " if label else ""
    return final_state([(layer.open_uncompressed, f"{prefix}layer {i} ({layer.digest})") for i, layer in
                        enumerate(image.layers())], members)


def final_state(layers: list[tuple[Callable[[], IO[bytes]], str]],
                members: list[dict[str, FileState]] | None = None) -> dict[str, FileState]:
    """The filesystem that uncompressed layer tars (openers, lowest first) stack up to; with
    `members`, each layer's own entries (whiteouts and opaque markers as such kinds) too."""
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
        if members is not None:
            members.append({_member_path(e): FileState(e.kind, e.size, e.linkname, e.digest, e.meta) for e in entries})
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


def _member_path(e: TarEntry) -> str:
    """The member's name in its tar (a whiteout or opaque marker as written, not its target)."""
    if e.kind == OPAQUE:
        return f"{e.path}/{WH_OPAQUE}" if e.path else WH_OPAQUE
    if e.kind == WHITEOUT:
        head, _, base = e.path.rpartition("/")
        return f"{head}/{WH_PREFIX}{base}" if head else WH_PREFIX + base
    return e.path


def _layer_label(side: LayerSide) -> str:
    return f"{side.diff_id[:19]}  {human_size(side.size):>9}  {side.created_by}"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def compare_files(fa: dict[str, FileState], fb: dict[str, FileState]) -> list[FileChange]:
    """Paths added, removed or changed from `fa` to `fb` (directories only when their mode or
    owner changed), in path order."""
    files = []
    for path in sorted(set(fa) | set(fb)):
        x, y = fa.get(path), fb.get(path)
        if x == y:
            continue
        if x is None:
            assert y is not None
            if y.kind != DIR:
                files.append(FileChange("/" + path, "added", 0, y.size, "" if y.kind in (FILE, DIR) else y.kind))
        elif y is None:
            if x.kind != DIR:
                files.append(FileChange("/" + path, "removed", x.size, 0, "" if x.kind in (FILE, DIR) else x.kind))
        elif x.kind != y.kind:
            files.append(FileChange("/" + path, "changed", x.size, y.size, f"kind {x.kind} -> {y.kind}"))
        else:
            details = [f"link {x.linkname} -> {y.linkname}"] if x.linkname != y.linkname else []
            details += ["content"] if (x.digest, x.size) != (y.digest, y.size) else []
            (mode_a, owner_a), (mode_b, owner_b) = (x.meta.split(" ") + [""])[:2], (y.meta.split(" ") + [""])[:2]
            details += [f"mode {mode_a} -> {mode_b}"] if mode_a != mode_b else []
            details += [f"owner {owner_a} -> {owner_b}"] if owner_a != owner_b else []
            files.append(FileChange("/" + path, "changed", x.size, y.size, ", ".join(details)))
    return files


def diff_images(a: "Image", b: "Image", *, label_a: str = "A", label_b: str = "B") -> ImageDiff:
    """Compare two images: layers by position (and the members of a differing pair), files of
    the final filesystems, config fields."""
    def sides(img: "Image") -> list[LayerSide]:
        layers = list(img.layers())
        made = [h.created_by for h in img.config().history if not h.empty_layer]
        made = made if len(made) == len(layers) else [""] * len(layers)
        return [LayerSide(str(layer.diff_id), str(layer.digest), layer.size, by) for layer, by in zip(layers, made)]

    sa, sb = sides(a), sides(b)
    ma: list[dict[str, FileState]] = []
    mb: list[dict[str, FileState]] = []
    fa, fb = final_files(a, label_a, ma), final_files(b, label_b, mb)
    layers = []
    for i in range(max(len(sa), len(sb))):
        x, y = (sa[i] if i < len(sa) else None), (sb[i] if i < len(sb) else None)
        same = x is not None and y is not None and x.diff_id == y.diff_id
        changes = tuple(compare_files(ma[i], mb[i])) if x is not None and y is not None and not same else ()
        layers.append(LayerPair(i, x, y, same, changes))
    ca, cb = _flat(json.loads(a.raw_config())), _flat(json.loads(b.raw_config()))
    skip = ("rootfs.diff_ids", "history", "created")
    config = tuple((k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb))
                   if ca.get(k) != cb.get(k) and not k.startswith(skip))
    return ImageDiff(label_a, label_b, tuple(layers), tuple(compare_files(fa, fb)), config)


def _change_line(f: FileChange, sign: dict[str, str]) -> str:
    delta = f"{'+' if f.delta >= 0 else ''}{f.delta}"
    return f"{sign[f.change]} {f.path}  {f.size_a} -> {f.size_b} ({delta})" + (f"  [{f.detail}]" if f.detail else "")


def render_diff(d: ImageDiff, *, limit: int = 200, layer_limit: int = 20) -> str:
    lines = [f"--- {d.a}", f"+++ {d.b}", "", "Layers:"]
    sign = {"added": "+", "removed": "-", "changed": "~"}
    for p in d.layers:
        mark = "=" if p.same else "!"
        lines.append(f" {mark} {p.index:>2}  A: {_layer_label(p.a) if p.a else '(none)'}")
        if not p.same:
            lines.append(f"        B: {_layer_label(p.b) if p.b else '(none)'}")
        if p.metadata_only:
            lines.append("          same files, contents, modes and owners: the layers differ only in mtimes "
                         "(or member order, xattrs); SOURCE_DATE_EPOCH makes them equal")
        for f in p.files[:layer_limit]:
            lines.append(f"          {_change_line(f, sign)}")
        if len(p.files) > layer_limit:
            lines.append(f"          ... {len(p.files) - layer_limit} more members differ (--json lists all)")
    counts = {c: sum(f.change == c for f in d.files) for c in ("added", "removed", "changed")}
    lines += ["", f"Files: {counts['added']} added, {counts['removed']} removed, {counts['changed']} changed; "
              f"size {'+' if d.bytes_delta >= 0 else ''}{d.bytes_delta} bytes"]
    for f in d.files[:limit]:
        lines.append(" " + _change_line(f, sign))
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
    for pair, layer in zip(d.layers, data["layers"]):
        layer["metadata_only"] = pair.metadata_only
    return data


def diff_explorer(a: "Image", b: "Image", *, label_a: str = "A", label_b: str = "B") -> "Explorer":
    """The explorer's model of two images: layer 0 is A's final filesystem, layer 1 B's, so layer
    1's marks are what changed from A to B (the `files` of `diff_images`, directories included)."""
    from builder.analyze.explore import Explorer
    from builder.analyze.layers import LayerSource

    fa, fb = final_files(a, label_a), final_files(b, label_b)
    model = Explorer()

    def entries(files: dict[str, FileState]) -> list[TarEntry]:
        return [TarEntry(p, s.kind, s.size, s.linkname, s.digest, s.meta) for p, s in sorted(files.items())]

    def with_dirs(files: dict[str, FileState]) -> set[str]:  # the paths and every directory above them
        out = set(files)
        for path in files:
            while "/" in path:
                path = path.rpartition("/")[0]
                out.add(path)
        return out

    pa, pb = with_dirs(fa), with_dirs(fb)
    gone = [TarEntry(p, WHITEOUT, 0) for p in sorted(pa - pb) if "/" not in p or p.rpartition("/")[0] in pb]
    for side, label, image, layer in (("A", label_a, a, entries(fa)), ("B", label_b, b, gone + entries(fb))):
        model.add_layer(layer, LayerSource(open=lambda: None, digest=str(image.id),  # type: ignore[arg-type,return-value]
                                           created_by=f"{side}: {label}"))
    return model
