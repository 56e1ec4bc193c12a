"""A read-only view of a root filesystem: one directory, or a stack of layer directories.

COPY reads from the build context (a plain directory), from another stage's rootfs, or from an
image whose layers are unpacked side by side without being mounted. `RootView` answers the few
questions COPY asks of all three, with every path confined to the root:

    view = RootView(path)                  # one directory
    view = RootView([upper, ..., lowest])  # layers, top-most first, overlay semantics
    view.resolve("a/link/b")               # follow symlinks inside the root -> "a/target/b"
    view.lstat(rel) / view.host_path(rel) / view.listdir(rel) / view.readlink(rel)
    as_view(view_or_paths)                 # a RootView from a RootView, a directory or layer directories

Symlinks resolve as if the root were `/` (an absolute target starts at the root, `..` stops at
it), the way a chroot does, so a link can never lead outside. In layer stacks a whiteout hides
lower entries: overlayfs style (a 0:0 character device; a directory with the xattr
`trusted.overlay.opaque=y`) or OCI style (`.wh.NAME`, `.wh..wh..opq`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.build.dockerignore import clean_path
from builder.cache.memo import stat_key
from builder.errors import BuildError

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import Sequence, Union

__all__ = ["RootView", "as_view", "split_path", "stacked"]

_WH = ".wh."
_WH_OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 255


def split_path(rel: str) -> list[str]:
    """Components of a root-relative path, cleaned (`..` never climbs above the root)."""
    cleaned = clean_path("/" + rel)
    return [p for p in cleaned.split("/") if p]


class RootView:
    """A root filesystem made of one directory or of layer directories (top-most first)."""

    def __init__(self, layers: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                 trace: dict[str, tuple[int, int, int, int, int] | None] | None = None) -> None:
        if isinstance(layers, (str, os.PathLike)):
            layers = [layers]
        self.layers = [Path(p) for p in layers]
        if not self.layers:
            raise ValueError("RootView needs at least one directory")
        self.single = len(self.layers) == 1
        self.root = self.layers[0]
        # (a single directory) every host path looked at -> its `cache.memo.stat_key`: what a
        # replay of the build checks (see cache/memo.py)
        self.trace = trace if self.single else None

    def __repr__(self) -> str:
        return f"RootView({[str(p) for p in self.layers]!r})"

    # -- lookups --------------------------------------------------------------------------

    def host_path(self, rel: str) -> Path | None:
        """Where the entry at `rel` lives on the host. `rel` must come from `resolve()` (or be a
        name inside a resolved directory): in a single directory its parents are not re-checked."""
        parts = split_path(rel)
        if self.single:
            path = self.root.joinpath(*parts)
            if self.trace is not None and str(path) not in self.trace:  # the first look: what later reads saw
                self.trace[str(path)] = stat_key(str(path))
            return path if os.path.lexists(path) else None
        return self._layer_lookup(parts)

    def lstat(self, rel: str) -> os.stat_result | None:
        path = self.host_path(rel)
        return None if path is None else os.lstat(path)

    def readlink(self, rel: str) -> str:
        path = self.host_path(rel)
        if path is None:
            raise FileNotFoundError(rel)
        return os.readlink(path)

    def listdir(self, rel: str) -> list[str]:
        """Names in the directory `rel` (merged across layers), sorted."""
        parts = split_path(rel)
        if self.single:
            here = str(self.root.joinpath(*parts))
            if self.trace is not None and here not in self.trace:
                self.trace[here] = stat_key(here)
            return sorted(os.listdir(here))
        names: set[str] = set()
        hidden: set[str] = set()
        for layer in self.layers:
            state, path = _probe(layer, parts)
            if state == _ABSENT:
                continue
            if state == _HIDDEN or path is None or not stat.S_ISDIR(os.lstat(path).st_mode):
                break
            for name in os.listdir(path):
                if name == _WH_OPAQUE:
                    continue
                if name.startswith(_WH):
                    hidden.add(name[len(_WH):])
                    continue
                if name in hidden or name in names:
                    continue
                if _is_char_whiteout(path / name):
                    hidden.add(name)
                    continue
                names.add(name)
            if _is_opaque(path):
                break
        return sorted(names)

    def _layer_lookup(self, parts: list[str]) -> Path | None:
        for layer in self.layers:
            state, path = _probe(layer, parts)
            if state == _FOUND:
                return path
            if state == _HIDDEN:
                return None
        return None

    # -- symlinks -------------------------------------------------------------------------

    def resolve(self, rel: str, *, follow_last: bool = True, within: str = "") -> str:
        """`rel` with every symlink followed inside the root; the path need not exist.

        This is the one FollowSymlinkInScope of the builder: every path a step reads or creates
        is resolved here. An absolute link target starts again at the root (or at `within`, a
        directory treated as the root, as a chroot into it: ADD's archive extraction), `..`
        stops there. Returns a cleaned root-relative path without a leading slash ("" is the
        root); a symlink loop is a BuildError ("too many links", as BuildKit says).
        """
        base = split_path(within)
        todo = split_path(rel)
        if todo[:len(base)] == base:
            todo = todo[len(base):]
        todo.reverse()
        done: list[str] = list(base)
        hops = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if len(done) > len(base):
                    done.pop()
                continue
            candidate = "/".join(done + [name])
            st = self.lstat(candidate)
            if st is None or not stat.S_ISLNK(st.st_mode) or (not todo and not follow_last):
                done.append(name)
                continue
            hops += 1
            if hops > _MAX_LINKS:
                raise BuildError(f"/{'/'.join(split_path(rel))}: too many links (a symlink loop)")
            target = self.readlink(candidate)
            if target.startswith("/"):
                done = list(base)
            parts = [p for p in target.split("/") if p and p != "."]
            todo.extend(reversed(parts))
        return "/".join(done)

    def is_dir(self, rel: str) -> bool:
        """True when `rel` exists and is a directory after following symlinks in the root."""
        st = self.lstat(self.resolve(rel))
        return st is not None and stat.S_ISDIR(st.st_mode)


_FOUND, _ABSENT, _HIDDEN = "found", "absent", "hidden"


if TYPE_CHECKING:  # (annotations only: importing it needs `if TYPE_CHECKING` too)
    ViewLike = Union[RootView, str, os.PathLike, Sequence[Union[str, os.PathLike]]]
    """What COPY takes as a root: a RootView, one directory, or layer directories (top-most first)."""


def stacked(upper: str | os.PathLike[str], below: RootView | None) -> RootView:
    """The root a step sees while it writes `upper` (its layer directory) over `below`."""
    return RootView([upper, *below.layers]) if below is not None else RootView(upper)


def as_view(v: ViewLike | None) -> RootView | None:
    """`v` as a RootView (None stays None)."""
    if v is None or isinstance(v, RootView):
        return v
    return RootView(v)


def _probe(layer: Path, parts: list[str]) -> tuple[str, Path | None]:
    """What one layer says about `parts`: found (its host path), absent (ask the layer below),
    or hidden (a whiteout, an opaque directory or a non-directory hides everything below).

    Every component is lstat'ed, so no symlink in a layer is ever followed on the host."""
    path = layer
    for i, name in enumerate(parts):
        if os.path.lexists(path / (_WH + name)):
            return _HIDDEN, None
        child = path / name
        try:
            st = os.lstat(child)
        except (FileNotFoundError, NotADirectoryError):
            return (_HIDDEN if i and _is_opaque(path) else _ABSENT), None
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return _HIDDEN, None
        if i == len(parts) - 1:
            return _FOUND, child
        if not stat.S_ISDIR(st.st_mode):
            return _HIDDEN, None
        path = child
    return _FOUND, layer


def _is_opaque(path: Path) -> bool:
    return os.path.lexists(path / _WH_OPAQUE) or _has_opaque_xattr(path)


def _is_char_whiteout(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _has_opaque_xattr(path: Path) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False
