"""COPY and ADD: put files into a layer directory (an overlay upperdir or a plain directory).

Pure library code: paths and plain data in, files written into `layer_dir`, ContextError or
BuildError out. The caller has already expanded ARGs and wildcards (`context.expand_sources`).

    copy_files(layer_dir, items, dest, *, src=None, target=None, workdir="/", owner=None,
               chmod=None, excludes=(), parents=False, link=False, ignore=None, unpack=False,
               preserve_owner=False, reuse=None, where="") -> list[str]
        items: context-relative paths (str, read from `src`), HeredocSource or FetchedFile; no
             items makes the directory `dest` (and its parents) and nothing else.
        parents: `--parents`: the source's path is recreated under `dest`, from a `/./` pivot if
             the (expanded) source has one; `expand_sources` keeps pivots.
        Several sources need no directory destination (BuildKit copies them one after the
             other to `dest`: a later file replaces an earlier one, directories merge, a file
             after a directory goes into it; docker's legacy builder and buildah refuse).
        preserve_owner: keep the source's uid:gid when no --chown is given: pass True for
             `COPY --from` (BuildKit and buildah keep a stage's owners), False for the context.
        src: the source root: a directory or a RootView (the context, another stage's rootfs, or
             an image's layers, top-most first). target: the image being built on (a directory,
             a list of layer directories or a RootView), used to follow symlinks in `dest`, to
             see whether `dest` already is a directory, and to copy up the metadata of existing
             parent directories. Returns the image paths written at the top level.
        reuse: a `files.reuse.Reuse` for an incremental re-run: unchanged files are hard-linked
             from the previous result of the same COPY instead of copied (same layer bytes).

Its neighbours: `files.ownership` (--chown, --chmod), `files.extract` (ADD of a local archive),
`files.writer` (entries in a layer directory), `files.regular` (one file's bytes and metadata),
`files.reuse` (incremental copies), `sources.http` (ADD of a URL: `FetchedFile`).

BuildKit's semantics kept here (checked against `buildah bud` in tests/builder/test_copy_buildah.py
where the two agree): a directory source copies its contents, into a destination made 0755 (not
a copy of the source directory); a destination ending in `/` (or `.`), or already a directory in
the target, receives sources by their base names; files keep their mode, mtime and xattrs (file
capabilities; not overlayfs' own or SELinux labels) and are owned 0:0 unless `--chown` (or
`preserve_owner`); missing parent directories are created 0755 (an octal --chmod's mode), owned
by the `--chown` owner; ADD unpacks local tar archives (gzip, bzip2, xz, zstd or none, recognised by
content; entries keep the archive's modes, and its owners unless --chown owns them all; --chmod
does not reach them) but never URLs; a URL is saved 0600 with the mtime of its Last-Modified header; heredoc
files are 0644. `--link` writes the same files but never looks at the target (the layer is
independent of its parent).
"""

from __future__ import annotations

import operator
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, Union

from builder.build.dockerignore import PatternMatcher, clean_path
from builder.build.files.extract import extract_into, is_archive
from builder.build.files.ownership import Chmod, parse_chmod
from builder.build.files.regular import copy_plain, copy_regular
from builder.build.files.reuse import Reuse
from builder.build.files.writer import LayerWriter
from builder.build.fsview import RootView, as_view, split_path
from builder.build.sources.http import FetchedFile
from builder.errors import BuildError, ContextError
from runtime.userns import UNMAPPED_HINT

if TYPE_CHECKING:
    from builder.build.fsview import ViewLike

__all__ = ["HeredocSource", "copy_files"]


@dataclass(frozen=True)
class HeredocSource:
    """`COPY <<EOF /dest`: a file named `name` with the (already expanded) `content`."""

    name: str
    content: bytes
    mode: int = 0o644  # BuildKit asks for 0664, written under the daemon's 022 umask


Item = Union[str, HeredocSource, FetchedFile]  # a source path (in `src`), a heredoc, a download


class _Copier(LayerWriter):
    """A LayerWriter that copies entries from a source root (hard links kept within one source)."""

    def __init__(self, layer_dir: Path, target: RootView | None, owner: tuple[int, int] | None,
                 chmod: Chmod | None) -> None:
        super().__init__(layer_dir, target, owner, chmod)
        self.preserve_owner = False
        self.links: dict[tuple[int, int], str] = {}
        self.sockets: list[str] = []  # skipped: a socket cannot be copied (BuildKit warns and skips too)

    def parent_dirs(self, src: RootView, rel: str, kept: str, dest_rel: str, count: int) -> None:
        """`--parents`: make the first `count` directories of `kept` (the tail of the source path
        `rel`) under `dest_rel` as BuildKit's copier does: a new one is a copy of the source
        directory (mode, owner, times), an existing one takes its mode."""
        parts, src_parts = split_path(kept), split_path(rel)
        base = src_parts[:len(src_parts) - len(parts)]
        for i in range(1, count + 1):
            out_rel = self.resolve("/".join([*split_path(dest_rel), *parts[:i]]))
            st = src.lstat(src.resolve("/".join(base + parts[:i])))
            if st is None or not stat.S_ISDIR(st.st_mode):
                self.ensure_dir(out_rel)
                continue
            host = self.host(out_rel)
            existed = self.is_dir(out_rel)
            if os.path.lexists(host) and not os.path.isdir(host):
                self.remove(host, False)
            self.ensure_dir(out_rel)
            if existed:
                os.chmod(host, stat.S_IMODE(st.st_mode))
            else:
                owner = self.owner or ((st.st_uid, st.st_gid) if self.preserve_owner else (0, 0))
                self.finish_entry(host, st.st_mode, st.st_mtime_ns, st.st_atime_ns, src_owner=owner)

    def copy_children(self, src: RootView, real: str, dest_rel: str, exclude: PatternMatcher | None,
                      ignore: PatternMatcher | None, sub: str = "", *, fresh: bool = False) -> None:
        """Copy what is inside the directory `real` into the existing directory `dest_rel`.

        `fresh`: the destination was just made (empty), so nothing can be in the way."""
        dest_host = self.host(dest_rel)
        istate = ignore.state_of(real)[1] if ignore is not None else ()
        self._copy_dir_entries(src, real, None, dest_host, exclude, ignore, sub, fresh, istate)

    def _copy_dir_entries(self, src: RootView, real: str, src_host: str | None, dest_host: str,
                          exclude: PatternMatcher | None, ignore: PatternMatcher | None, sub: str, fresh: bool,
                          istate: tuple[bool, ...]) -> None:
        for name, child_host, st in _children(src, real, src_host):
            child = f"{real}/{name}" if real else name
            child_sub = f"{sub}/{name}" if sub else name
            if exclude is not None and exclude.matches(child_sub):
                continue
            cstate = istate
            if ignore is not None:
                excluded, cstate = ignore.match_child(child, istate)
                if excluded and not (stat.S_ISDIR(st.st_mode) and ignore.may_reinclude_under(child)):
                    continue
            self._copy(src, child, child_host, st, f"{dest_host}/{name}", exclude, ignore, child_sub, fresh, cstate)

    def copy_entry(self, src: RootView, real: str, dest_rel: str, exclude: PatternMatcher | None,
                   ignore: PatternMatcher | None, sub: str = "") -> None:
        """Copy the entry at `real` (resolved in `src`) to `dest_rel`, recursively."""
        src_host = src.host_path(real)
        if src_host is None:
            raise ContextError(f"COPY/ADD source {real!r} vanished")
        istate = ignore.state_of(real)[1] if ignore is not None else ()
        self._copy(src, real, str(src_host), os.lstat(src_host), self.host(dest_rel), exclude, ignore, sub, False,
                   istate)

    def _copy(self, src: RootView, real: str, src_host: str, st: os.stat_result, host: str,
              exclude: PatternMatcher | None, ignore: PatternMatcher | None, sub: str, fresh: bool,
              istate: tuple[bool, ...]) -> None:
        mode = st.st_mode
        owner = self.owner or ((st.st_uid, st.st_gid) if self.preserve_owner else (0, 0))
        if stat.S_ISDIR(mode):
            made = fresh
            if fresh:
                os.mkdir(host, 0o700)
            else:
                self.clear(host, want_dir=True)
                if not os.path.isdir(host):
                    os.mkdir(host, 0o700)
                    made = True
            self._copy_dir_entries(src, real, src_host, host, exclude, ignore, sub, made, istate)
            if ignore is not None and real and ignore.matches(real) and not os.listdir(host):
                os.rmdir(host)  # excluded, kept only for a re-included child: none was
                return
            self._chown(host, owner)
            os.chmod(host, self._mode(mode, True))
            self.dir_times.append((host, st.st_atime_ns, st.st_mtime_ns))
            return
        if not fresh:
            self.clear(host, want_dir=False)
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                first = self.links.get(key)
                if first is not None:
                    os.link(first, host)
                    return
                self.links[key] = host
            bits = self._mode(mode, False)
            reuse = self.reuse if self._may_chown else None
            if reuse is None:
                copy_regular(src_host, host, owner, bits, st, self._may_chown)
                return
            known = reuse.digest_of(src_host, st)
            if known is not None and reuse.link_previous(host[self.cut:], host, src_host, st, owner, bits, known):
                return
            if reuse.link_source(host[self.cut:], host, src_host, st, owner, bits, known):
                return
            ino, digest = copy_regular(src_host, host, owner, bits, st, True, known or True)
            if digest is not None:
                reuse.written[host[self.cut:]] = (digest, ino)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src_host), host)
            self._chown(host, owner)
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(host, mode, st.st_rdev)
            self.finish_entry(host, mode, st.st_mtime_ns, st.st_atime_ns, src_owner=owner)
        elif stat.S_ISSOCK(mode):
            self.sockets.append(real)


def _children(src: RootView, real: str, src_host: str | None = None) -> list[tuple[str, str, os.stat_result]]:
    """(name, host path, lstat) of each entry of the directory `real` in `src`, sorted by name."""
    if src.single:
        host = src_host or str(src.host_path(real))
        with os.scandir(host) as it:
            items = sorted(it, key=_BY_NAME)
        return [(e.name, e.path, e.stat(follow_symlinks=False)) for e in items]
    out = []
    for name in src.listdir(real):
        path = src.host_path(f"{real}/{name}" if real else name)
        if path is not None:
            out.append((name, str(path), os.lstat(path)))
    return out


_BY_NAME = operator.attrgetter("name")


def _parents_part(source: str) -> str:
    """The part of a source path that `--parents` recreates under the destination: all of it,
    or what follows a `/./` pivot (`COPY --parents ./x/./y/a.txt /d/` writes /d/y/a.txt)."""
    body = source
    while body.startswith("./"):
        body = body[2:]
    body = body.lstrip("/")
    if "/./" in body:
        body = body.split("/./", 1)[1]
    return "/".join(split_path(body))


def _dest_is_dir_syntax(dest: str) -> bool:
    return dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/.."))


def _unmapped(exc: OSError, owner: tuple[int, int] | None) -> str | None:
    """Rootless: an owner this user namespace cannot represent (chown gives EINVAL), named."""
    import errno

    from runtime.userns import in_user_namespace, unmapped_owner

    if exc.errno != errno.EINVAL or not in_user_namespace():
        return None
    return unmapped_owner(*owner) if owner else unmapped_owner(None, None)


def copy_files(layer_dir: str | os.PathLike[str], items: Sequence[Item], dest: str, *,
               src: ViewLike | None = None, target: ViewLike | None = None, workdir: str = "/",
               owner: tuple[int, int] | None = None, chmod: str | Chmod | None = None,
               excludes: Sequence[str] = (), parents: bool = False, link: bool = False,
               ignore: PatternMatcher | None = None, unpack: bool = False, preserve_owner: bool = False,
               reuse: Reuse | None = None, where: str = "", warn: Callable[[str], None] | None = None) -> list[str]:
    """Apply one COPY/ADD into `layer_dir`; see the module docstring. `warn(message)` is told of
    each source skipped because it cannot be copied (a socket)."""
    layer = Path(layer_dir)
    src_view = as_view(src)
    target_view = None if link else as_view(target)
    mode = parse_chmod(chmod) if isinstance(chmod, str) else chmod
    exclude = PatternMatcher(list(excludes), source="--exclude") if excludes else None
    writer = _Copier(layer, target_view, owner, mode)
    writer.preserve_owner = preserve_owner and owner is None
    writer.reuse = None if unpack else reuse  # an unpacked archive would replace files behind its back
    dest_abs = clean_path(os.path.join("/", workdir, dest))
    dest_rel = writer.resolve(dest_abs)
    if not items:  # nothing to copy: make the destination directory (WORKDIR uses this)
        writer.ensure_dir(dest_rel)
        return ["/" + dest_rel]
    written: list[str] = []
    item: Item | None = None
    try:
        for item in items:
            writer.links = {}  # hard links are kept within one source, never across two (BuildKit's copier)
            dest_dir = _dest_is_dir_syntax(dest) or writer.is_dir(dest_rel)  # an earlier source may have made it
            if isinstance(item, (HeredocSource, FetchedFile)):
                name = os.path.basename(item.name.rstrip("/")) or "index"
                out_rel = writer.place(f"{dest_rel}/{name}" if dest_dir else dest_rel)
                host = writer.host(out_rel)
                writer.clear(host, want_dir=False)
                if isinstance(item, HeredocSource):
                    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(item.content)
                    writer.finish_entry(host, stat.S_IFREG | item.mode, time.time_ns())
                else:
                    copy_plain(str(item.path), host)
                    mt = int(item.mtime * 1e9) if item.mtime is not None else time.time_ns()
                    writer.finish_entry(host, stat.S_IFREG | item.mode, mt)
                written.append("/" + out_rel)
                continue
            if src_view is None:
                raise ContextError(f"{where}COPY/ADD source {item!r} needs a source root")
            rel = "/".join(split_path(item))
            kept = _parents_part(item) if parents else rel  # what --parents keeps of the path
            real = src_view.resolve(rel)
            st = src_view.lstat(real)
            if st is None:
                raise ContextError(f"{where}COPY/ADD source {item!r}: not found")
            # --exclude matches below a source directory (BuildKit never matches the source itself:
            # `ADD --exclude=* dir* /6` makes an empty /6); a file source it names is left out
            if exclude and rel and not stat.S_ISDIR(st.st_mode) and exclude.matches(os.path.basename(rel)):
                continue
            if stat.S_ISDIR(st.st_mode):
                out_rel = writer.resolve(f"{dest_rel}/{kept}") if parents and kept else dest_rel
                if parents:
                    writer.parent_dirs(src_view, rel, kept, dest_rel, len(split_path(kept)))
                host = writer.host(out_rel)
                if os.path.lexists(host) and not os.path.isdir(host):
                    writer.remove(host, False)
                writer.ensure_dir(out_rel)  # an existing dir keeps its metadata, a new one is 0755
                writer.copy_children(src_view, real, out_rel, exclude, ignore)
                written.append("/" + out_rel)
                continue
            host_src = src_view.host_path(real)
            if unpack and host_src is not None and stat.S_ISREG(st.st_mode) and is_archive(host_src):
                out_rel = f"{dest_rel}/{os.path.dirname(kept)}" if parents else dest_rel
                out_rel = writer.ensure_dir(out_rel, plain=True)
                # --chown owns every entry (BuildKit's unpack); without it the archive's owners stay;
                # --chmod does not reach them
                unpacker = LayerWriter(layer, target_view, owner, None)
                with open(host_src, "rb") as f:
                    extract_into(f, unpacker, out_rel, name=item, keep_owner=owner is None)
                unpacker.close()
                written.append("/" + out_rel)
                continue
            if parents:
                out_rel = f"{dest_rel}/{kept}"
                writer.parent_dirs(src_view, rel, kept, dest_rel, len(split_path(kept)) - 1)
            else:
                out_rel = f"{dest_rel}/{os.path.basename(rel)}" if dest_dir else dest_rel
            out_rel = writer.place(out_rel)
            writer.copy_entry(src_view, real, out_rel, exclude, ignore)
            written.append("/" + out_rel)
    except RecursionError:
        raise BuildError(f"{where}COPY/ADD {item!r}: directories nested too deeply to copy") from None
    except OSError as exc:
        what = item if isinstance(item, str) else getattr(item, 'name', '?')
        unmapped = _unmapped(exc, owner)
        if unmapped:
            raise BuildError(f"{where}COPY/ADD {what!r}: {unmapped}", hint=UNMAPPED_HINT) from None
        raise BuildError(f"{where}COPY/ADD {what!r}: {exc.strerror or exc}"
                         + (f" ({exc.filename})" if exc.filename else "")) from None
    writer.close()
    for path in writer.sockets if warn is not None else ():
        warn(f"{where}COPY/ADD skipped {path.lstrip('/') or '.'}: a socket cannot be copied")  # type: ignore[misc]
    return written
