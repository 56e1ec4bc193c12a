"""An image as the conformance suite compares it, read from a docker-archive (`docker save`,
`buildah push docker-archive:`, `pybuild build -o type=docker`).

    snapshot(archive, base_layers=1) -> dict   JSON-able: config, history, layers, files
    of_layers(config, [(key, open)], base_layers=1) -> dict    the same from a config and layer tars

`files`: the final filesystem, path -> [type, mode, uid, gid, size, sha256, link target, xattrs,
hard-link group] (mtimes are left out: no SOURCE_DATE_EPOCH here). `layers`: each layer above the
base as its change set, sorted lines "A path" (added), "C path" (changed: it existed below),
"D path" (deleted: a whiteout), "O path" (opaque directory). `history`: the entries above the
base's, as [created_by, empty_layer]. `config`: the fields a Dockerfile sets.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
import re
import tarfile
from typing import IO, Any, Callable

CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
                 "Healthcheck", "StopSignal", "Shell", "OnBuild")
_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
          tarfile.LNKTYPE: "file", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}
WH, OPQ = ".wh.", ".wh..wh..opq"


def snapshot(archive: str, base_layers: int = 1) -> dict[str, Any]:
    """Read the first image of a docker-archive."""
    with tarfile.open(archive) as outer:
        manifest = json.load(_member(outer, "manifest.json"))[0]
        config = json.load(_member(outer, manifest["Config"]))
        return of_layers(config, [(name, lambda n=name: _member(outer, n)) for name in manifest["Layers"]],
                         base_layers)


_BASES: dict[str, tuple[dict[str, list[Any]], dict[str, str]]] = {}  # the base layer applied, by its key


def of_layers(config: dict[str, Any], layers: list[tuple[str, Callable[[], IO[bytes]]]],
              base_layers: int = 1) -> dict[str, Any]:
    """The snapshot of an image given its config and its layers as (key, open uncompressed tar);
    the base layers' state is kept in memory by their keys (digests), so each is read once."""
    files: dict[str, list[Any]] = {}
    links: dict[str, str] = {}  # hard link -> what it links to
    out_layers = []
    nbase = base_layers
    base_key = "\0".join(key for key, _ in layers[:base_layers])
    if base_key in _BASES:
        files, links = copy.deepcopy(_BASES[base_key])
        layers = layers[base_layers:]
        base_layers = 0
    for i, (key, opener) in enumerate(layers):
        with opener() as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            changes = _apply(tar, files, links)
        if i >= base_layers:
            out_layers.append(changes)
        elif i == base_layers - 1:
            _BASES[base_key] = copy.deepcopy((files, links))
    _link_groups(files, links)
    history = [h for h in config.get("history", [])]
    seen = 0
    while history and seen < nbase:  # drop the base's entries (up to its last layer)
        if not history.pop(0).get("empty_layer"):
            seen += 1
    cfg = config.get("config") or {}
    return {"config": {k: cfg.get(k) or None for k in CONFIG_FIELDS},
            "history": [[h.get("created_by", ""), bool(h.get("empty_layer"))] for h in history],
            "layers": out_layers, "files": files}


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    f = tar.extractfile(name)
    if f is None:
        raise ValueError(f"{name}: not a file in the archive")
    return f


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _drop_below(files: dict[str, list[Any]], links: dict[str, str], path: str, keep_self: bool) -> None:
    prefix = path + "/" if path else ""
    for p in [p for p in files if p.startswith(prefix) or (not keep_self and p == path)]:
        files.pop(p, None)
        links.pop(p, None)


def _undated_shadow(data: bytes) -> bytes:
    """/etc/shadow without the day of each password's last change (useradd writes today's date:
    builds on two days differ, whichever builder made them)."""
    return re.sub(rb"(?m)^([^:\n]*:[^:\n]*:)\d+:", rb"\1DAY:", data)


DATED = {"etc/shadow": _undated_shadow, "etc/shadow-": _undated_shadow}  # path -> its content without dates


def _apply(tar: tarfile.TarFile, files: dict[str, list[Any]], links: dict[str, str]) -> list[str]:
    """Apply one layer to `files`; return its change set."""
    entries = []
    for m in tar:
        path = _clean(m.name)
        if not path:
            continue
        if m.isreg() and path in DATED:
            f = tar.extractfile(m)
            digest = hashlib.sha256(DATED[path](f.read() if f is not None else b"")).hexdigest()
        elif m.isreg():
            f = tar.extractfile(m)
            h = hashlib.sha256()
            while f is not None and (chunk := f.read(1 << 20)):
                h.update(chunk)
            digest = h.hexdigest()
        else:
            digest = ""
        entries.append((path, m, digest))
    changes = []
    for path, m, _ in entries:  # opaque markers first: they hide what is below, not this layer's entries
        base = posixpath.basename(path)
        if base == OPQ:
            d = posixpath.dirname(path)
            changes.append(f"O {d}")
            _drop_below(files, links, d, keep_self=True)
    for path, m, digest in entries:
        base = posixpath.basename(path)
        if base == OPQ:
            continue
        if base.startswith(WH):
            gone = posixpath.join(posixpath.dirname(path), base[len(WH):])
            changes.append(f"D {gone}")
            _drop_below(files, links, gone, keep_self=False)
            continue
        changes.append(f"{'C' if path in files else 'A'} {path}")
        if m.islnk():
            target = files.get(_clean(m.linkname))
            entry = list(target) if target else ["file", m.mode & 0o7777, m.uid, m.gid, m.size, "", "", {}, None]
            links[path] = _clean(m.linkname)
        else:
            if not m.isdir() and files.get(path, [""])[0] == "dir":  # a directory replaced: its tree goes
                _drop_below(files, links, path, keep_self=True)
            links.pop(path, None)
            xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape").hex()
                      for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            entry = [_TYPES.get(m.type, repr(m.type)), m.mode & 0o7777, m.uid, m.gid,
                     m.size if m.isreg() else 0, digest, m.linkname if m.issym() else "", xattrs, None]
        files[path] = entry
    return sorted(changes)


def _link_groups(files: dict[str, list[Any]], links: dict[str, str]) -> None:
    """Name each hard-link group by its smallest path (set on every member)."""
    parent: dict[str, str] = {}

    def find(p: str) -> str:
        while parent.get(p, p) != p:
            p = parent[p]
        return p

    for a, b in links.items():
        if a in files and b in files:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for p in set(parent) | set(parent.values()):
        groups.setdefault(find(p), []).append(p)
    for members in groups.values():
        name = min(members)
        for p in members:
            files[p][8] = name
