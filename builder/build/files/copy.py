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
        reuse: a `Reuse` for an incremental re-run: unchanged files are hard-linked from the
             previous result of the same COPY instead of copied (same layer bytes).
    resolve_owner(spec, target) -> (uid, gid)      `--chown` "user[:group]", names looked up in the
                                                   target's /etc/passwd and /etc/group
    parse_chmod(spec) -> Chmod                     `--chmod` octal ("755") or symbolic ("u+x,go-w")
    fetch_url(url, into_dir, *, checksum=None) -> FetchedFile     ADD http(s)://, sha256 verified
    is_archive(path) -> bool                       a (compressed) tar ADD would unpack
    extract_archive(stream, dest_dir, *, name, keep_owner=True, owner=None)   never escapes dest_dir

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
independent of its parent). Known gap: a symlink inside an ADDed archive resolves inside the
extraction directory, not from the image root as Docker's chroot does (safer, rarely different).
"""

from __future__ import annotations

import bz2
import errno
import email.utils
import gzip
import hashlib
import lzma
import operator
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Sequence, Union

from builder.build.dockerignore import PatternMatcher, clean_path
from builder.errors import BuildError, ContextError
from builder.build.fsview import RootView, split_path

__all__ = [
    "Chmod",
    "FetchedFile",
    "HeredocSource",
    "Reuse",
    "copy_files",
    "extract_archive",
    "fetch_url",
    "is_archive",
    "parse_chmod",
    "resolve_owner",
]

ViewLike = Union[RootView, str, os.PathLike, Sequence[Union[str, os.PathLike]]]


@dataclass(frozen=True)
class HeredocSource:
    """`COPY <<EOF /dest`: a file named `name` with the (already expanded) `content`."""

    name: str
    content: bytes
    mode: int = 0o644  # BuildKit asks for 0664, written under the daemon's 022 umask


@dataclass(frozen=True)
class FetchedFile:
    """A downloaded ADD URL: saved at `path`, to be named `name`, with its Last-Modified mtime."""

    path: Path
    name: str
    digest: str
    mtime: float | None = None
    mode: int = 0o600


Item = Union[str, HeredocSource, FetchedFile]


@dataclass
class Reuse:
    """Hard links from an earlier result of the same COPY instead of copies (an incremental re-run).

    `prev_dir` is that result's layer directory, an immutable snapshot (None: nothing to reuse).
    `prev` maps its regular files (layer paths) to (sha256 of the bytes written, inode), as an
    earlier `written` recorded them. `digest_of(host_path, st)` is a source file's sha256 when it
    is known for exactly that stat (the stat cache, which the cache key trusts too), else None.

    A file is linked only when the earlier one has that content and the mode, owner and mtime this
    copy would give it, and neither has xattrs (only xattr-free files are recorded), so the layer
    is byte for byte what a full copy writes. An inode is linked at most once per layer (a tar
    hardlink entry appears only where the sources were hard links) and is never modified after.
    `written` collects {layer path: (sha256, inode)} of the regular files copied or linked and
    still in the layer, for the next re-run (nothing with `unpack`): a copied file's digest is the
    stat cache's when the source did not change during the copy, else hashed while copying.
    """

    prev_dir: str | None
    prev: Mapping[str, tuple[bytes, int]]
    digest_of: Callable[[str, os.stat_result], bytes | None]
    written: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    linked: set[int] = field(default_factory=set)


def _view(v: ViewLike | None) -> RootView | None:
    if v is None or isinstance(v, RootView):
        return v
    return RootView(v)  # type: ignore[arg-type]


# -- --chmod and --chown ------------------------------------------------------------------------


@dataclass(frozen=True)
class Chmod:
    """A parsed `--chmod`: `apply(mode, is_dir)` gives the new permission bits."""

    spec: str
    octal: int | None
    clauses: tuple[tuple[str, str, str], ...] = ()

    def apply(self, mode: int, is_dir: bool) -> int:
        if self.octal is not None:
            return self.octal
        mode = stat.S_IMODE(mode)
        for who, op, perms in self.clauses:
            mask = _who_mask(who)
            bits = 0
            for p in perms:
                if p == "r":
                    bits |= 0o444
                elif p == "w":
                    bits |= 0o222
                elif p == "x":
                    bits |= 0o111
                elif p == "X" and (is_dir or mode & 0o111):
                    bits |= 0o111
                elif p == "s":
                    bits |= stat.S_ISUID | stat.S_ISGID
                elif p == "t":
                    bits |= stat.S_ISVTX
            bits &= mask | stat.S_ISVTX if "t" in perms else mask
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~mask) | bits
        return mode


def _who_mask(who: str) -> int:
    if not who or "a" in who:
        return 0o7777 & ~stat.S_ISVTX
    mask = 0
    if "u" in who:
        mask |= 0o700 | stat.S_ISUID
    if "g" in who:
        mask |= 0o070 | stat.S_ISGID
    if "o" in who:
        mask |= 0o007
    return mask


_CLAUSE = re.compile(r"([ugoa]*)([-+=])([rwxXst]*)")


def parse_chmod(spec: str) -> Chmod:
    """`--chmod=755` (octal) or `--chmod=u+x,go-w` (symbolic, as chmod(1) and BuildKit)."""
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return Chmod(spec, int(spec, 8))
    clauses = []
    for part in spec.split(","):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise BuildError(f"invalid --chmod={spec}: expected octal (755) or symbolic (u+x,go-w) mode")
        clauses.append((m.group(1), m.group(2), m.group(3)))
    return Chmod(spec, None, tuple(clauses))


def resolve_owner(spec: str, target: ViewLike | None, *, lenient: bool = False) -> tuple[int, int]:
    """`--chown` "user", "user:group", numeric or names from the target's /etc/passwd, /etc/group.

    A name alone takes its primary group from passwd; a bare UID takes the same number as GID.
    An unknown name is an error, or with `lenient` (WORKDIR's owner, as BuildKit's file op) root's
    id for an unknown user and the user's group for an unknown group."""
    view = _view(target)
    user, _, group = spec.partition(":")
    if not user:
        raise BuildError(f"invalid --chown={spec}: missing user")
    if user.isdigit():
        uid = gid = int(user)  # a bare UID means the same GID (Docker's rule, whatever passwd says)
    else:
        entry = next((f for f in _read_db(view, "etc/passwd") if f[0] == user and len(f) > 3), None)
        if entry is None and not lenient:
            raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = (int(entry[2]), int(entry[3])) if entry else (0, 0)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = next((f for f in _read_db(view, "etc/group") if f[0] == group and len(f) > 2), None)
            if gentry is None and not lenient:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
            gid = int(gentry[2]) if gentry else gid
    return uid, gid


def _read_db(view: RootView | None, rel: str) -> list[list[str]]:
    if view is None:
        return []
    real = view.resolve(rel)
    path = view.host_path(real)
    if path is None or not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


# -- copying --------------------------------------------------------------------------------


class _Writer:
    """Writes into `layer_dir`, creating parents with copied-up or default metadata."""

    def __init__(self, layer_dir: Path, target: RootView | None, owner: tuple[int, int] | None,
                 chmod: Chmod | None) -> None:
        self.layer = layer_dir
        self.target = target
        self.owner = owner
        self.chmod = chmod
        self.preserve_owner = False
        self.reuse: Reuse | None = None
        self.cut = len(str(layer_dir)) + 1  # host path -> layer path
        self.links: dict[tuple[int, int], str] = {}
        self.dir_times: list[tuple[str, int, int]] = []

    def host(self, rel: str) -> str:
        return os.path.join(self.layer, *split_path(rel))

    def is_dir(self, rel: str) -> bool:
        try:
            if stat.S_ISDIR(os.lstat(self.host(rel)).st_mode):
                return True
        except (FileNotFoundError, NotADirectoryError):
            pass
        return self.target is not None and self.target.is_dir(rel)

    def resolve(self, rel: str) -> str:
        """`rel` with symlinks followed in the target image (or as written in this layer)."""
        if self.target is None:
            return "/".join(split_path(rel))
        return self.target.resolve(rel)

    def ensure_dir(self, rel: str, *, plain: bool = False) -> None:
        """Make every directory of `rel` exist in the layer (`plain`: 0755 whatever --chmod says,
        as BuildKit's unpack makes an archive's destination)."""
        parts = split_path(rel)
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            host = self.host(sub)
            try:
                st = os.lstat(host)
                if stat.S_ISDIR(st.st_mode):
                    continue
                self.remove(host, False)
            except FileNotFoundError:
                pass
            below = self.target.lstat(sub) if self.target is not None else None
            if below is not None and stat.S_ISDIR(below.st_mode):
                os.mkdir(host)
                os.chmod(host, stat.S_IMODE(below.st_mode))
                self._chown(host, (below.st_uid, below.st_gid))
                os.utime(host, ns=(below.st_atime_ns, below.st_mtime_ns))
            else:  # BuildKit makes the directories a COPY needs with an octal --chmod's mode, else 0755
                os.mkdir(host)
                octal = None if plain or self.chmod is None else self.chmod.octal
                os.chmod(host, 0o755 if octal is None else octal)
                self._chown(host, self.owner or (0, 0))

    def parent_dirs(self, src: RootView, rel: str, kept: str, dest_rel: str, count: int) -> None:
        """`--parents`: make the first `count` directories of `kept` (the tail of the source path
        `rel`) under `dest_rel` as BuildKit's copier does: a new one is a copy of the source
        directory (mode, owner, times), an existing one takes its mode."""
        parts, src_parts = split_path(kept), split_path(rel)
        base = src_parts[:len(src_parts) - len(parts)]
        for i in range(1, count + 1):
            out_rel = "/".join([*split_path(dest_rel), *parts[:i]])
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

    def clear(self, host: str, want_dir: bool) -> None:
        """Remove what is in the way of a new entry at `host` (a dir stays for a dir)."""
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return
            self.remove(host, True)
        else:
            self.remove(host, False)

    def remove(self, host: str, is_dir: bool) -> None:
        """Remove an entry of the layer (and forget what `reuse.written` said of it)."""
        if is_dir:
            shutil.rmtree(host)
        else:
            os.unlink(host)
        if self.reuse is not None and self.reuse.written:
            rel = host[self.cut:]
            self.reuse.written.pop(rel, None)
            if is_dir:
                below = [k for k in self.reuse.written if k.startswith(rel + "/")]
                for k in below:
                    del self.reuse.written[k]

    def _chown(self, host: str, ids: tuple[int, int]) -> None:
        try:
            os.lchown(host, *ids)
        except PermissionError:
            if os.geteuid() == 0:
                raise

    def finish_entry(self, host: str, st_mode: int, mtime_ns: int | None, atime_ns: int | None = None,
                     is_link: bool = False, src_owner: tuple[int, int] | None = None) -> None:
        is_dir = stat.S_ISDIR(st_mode)
        self._chown(host, src_owner if src_owner is not None else (self.owner or (0, 0)))
        if not is_link:
            mode = stat.S_IMODE(st_mode)
            if self.chmod is not None:
                mode = self.chmod.apply(mode, is_dir)
            os.chmod(host, mode)
        if mtime_ns is not None:
            if is_dir:
                self.dir_times.append((host, atime_ns or mtime_ns, mtime_ns))
            else:
                os.utime(host, ns=(atime_ns or mtime_ns, mtime_ns), follow_symlinks=not is_link)

    def close(self) -> None:
        for host, atime, mtime in reversed(self.dir_times):
            os.utime(host, ns=(atime, mtime), follow_symlinks=False)
        self.dir_times.clear()

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
                _copy_regular(src_host, host, owner, bits, st, self._may_chown)
                return
            known = reuse.digest_of(src_host, st)
            if known is not None and self._link_previous(src_host, host, st, owner, bits, known):
                return
            ino, digest = _copy_regular(src_host, host, owner, bits, st, True, known or True)
            if digest is not None:
                reuse.written[host[self.cut:]] = (digest, ino)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src_host), host)
            self._chown(host, owner)
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(host, mode, st.st_rdev)
            self.finish_entry(host, mode, st.st_mtime_ns, st.st_atime_ns, src_owner=owner)
        # sockets are not copied (Docker skips them too)

    def _link_previous(self, src_host: str, host: str, st: os.stat_result, owner: tuple[int, int], bits: int,
                       digest: bytes) -> bool:
        """Hard-link `host` to the previous result's identical file, if it has one (see `Reuse`)."""
        reuse = self.reuse
        assert reuse is not None
        rel = host[self.cut:]
        hit = reuse.prev.get(rel)
        if hit is None or hit[0] != digest or reuse.prev_dir is None or hit[1] in reuse.linked:
            return False
        old = reuse.prev_dir + "/" + rel
        try:
            ost = os.lstat(old)  # recorded without xattrs; snapshots never get new ones
            if (ost.st_ino != hit[1] or not stat.S_ISREG(ost.st_mode) or stat.S_IMODE(ost.st_mode) != bits
                    or (ost.st_uid, ost.st_gid) != owner or ost.st_mtime_ns != st.st_mtime_ns
                    or ost.st_size != st.st_size or _has_xattrs(src_host)):
                return False
            os.link(old, host, follow_symlinks=False)
        except OSError:
            return False  # gone, or on another filesystem: copy it
        reuse.linked.add(ost.st_ino)
        reuse.written[rel] = hit
        return True

    def _mode(self, mode: int, is_dir: bool) -> int:
        return self.chmod.apply(mode, is_dir) if self.chmod is not None else stat.S_IMODE(mode)

    @property
    def _may_chown(self) -> bool:
        return os.geteuid() == 0


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


def _copy_regular(src: str, dst: str, owner: tuple[int, int], mode: int, st: os.stat_result, chown: bool,
                  digest: bytes | bool = False) -> tuple[int, bytes | None]:
    """Copy one regular file's bytes, owner, mode, times and xattrs, working on descriptors.

    With `digest`, also return the new file's inode and the sha256 of the bytes written: True
    hashes them while copying; a known digest of the source (for exactly `st`) is returned when
    the source did not change while it was copied (its ctime would have moved). The digest is
    None when unsure, or when the source had xattrs (such a copy is never linked by a `Reuse`)."""
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            sha: bytes | None = None
            if digest is True:
                sha = _copy_fd_hashed(sfd, dfd)
            else:
                _copy_fd(sfd, dfd, st.st_size)
                if digest:
                    now = os.fstat(sfd)
                    same = (now.st_ino, now.st_ctime_ns, now.st_mtime_ns, now.st_size) == \
                        (st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)
                    sha = digest if same and isinstance(digest, bytes) else None
            if chown:
                os.fchown(dfd, *owner)
            os.fchmod(dfd, mode)  # after fchown, which clears set-id bits
            if _copy_xattrs(sfd, dfd):
                sha = None
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            return (os.fstat(dfd).st_ino if digest else 0), sha
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_fd_hashed(sfd: int, dfd: int) -> bytes:
    """Copy through memory, returning the sha256 of exactly the bytes written."""
    import hashlib

    h = hashlib.sha256()
    while chunk := os.read(sfd, 1 << 20):
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dfd, view):]
    return h.digest()


def _copy_fd(sfd: int, dfd: int, size: int) -> None:
    """copy_file_range (in-kernel, reflinks where the filesystem can), else read/write."""
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(sfd, dfd, min(left, 1 << 30))
            if n == 0:
                break
            left -= n
        if left <= 0:
            while chunk := os.read(sfd, 1 << 20):  # the file grew while we copied: take the rest
                os.write(dfd, chunk)
            return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while chunk := os.read(sfd, 1 << 20):
        os.write(dfd, chunk)


_SKIPPED_XATTRS = ("trusted.overlay.", "security.selinux")


def _has_xattrs(path: str) -> bool:
    """Whether a copy of `path` would carry xattrs (see `_copy_xattrs`); True when unknown."""
    try:
        return any(not n.startswith(_SKIPPED_XATTRS) for n in os.listxattr(path, follow_symlinks=False))
    except OSError:
        return True


def _copy_xattrs(src: str | int, dst: str | int) -> bool:
    """Copy extended attributes (file capabilities such as `security.capability` matter);
    overlayfs' own attributes and SELinux labels stay behind. False when there were none to copy."""
    try:
        names = os.listxattr(src) if isinstance(src, int) else os.listxattr(src, follow_symlinks=False)
    except OSError:
        return True  # unknown
    found = False
    for name in names:
        if name.startswith(_SKIPPED_XATTRS):
            continue
        found = True
        try:
            value = os.getxattr(src, name) if isinstance(src, int) else os.getxattr(src, name, follow_symlinks=False)
            if isinstance(dst, int):
                os.setxattr(dst, name, value)
            else:
                os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError:
            continue  # the destination filesystem may not take it (Docker ignores these too)
    return found


def _copy_file_data(src: str, dst: str) -> None:
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


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


def copy_files(layer_dir: str | os.PathLike[str], items: Sequence[Item], dest: str, *,
               src: ViewLike | None = None, target: ViewLike | None = None, workdir: str = "/",
               owner: tuple[int, int] | None = None, chmod: str | Chmod | None = None,
               excludes: Sequence[str] = (), parents: bool = False, link: bool = False,
               ignore: PatternMatcher | None = None, unpack: bool = False, preserve_owner: bool = False,
               reuse: Reuse | None = None, where: str = "") -> list[str]:
    """Apply one COPY/ADD into `layer_dir`; see the module docstring."""
    layer = Path(layer_dir)
    src_view = _view(src)
    target_view = None if link else _view(target)
    mode = parse_chmod(chmod) if isinstance(chmod, str) else chmod
    exclude = PatternMatcher(list(excludes), source="--exclude") if excludes else None
    writer = _Writer(layer, target_view, owner, mode)
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
                out_rel = f"{dest_rel}/{name}" if dest_dir else dest_rel
                writer.ensure_dir(os.path.dirname(out_rel))
                host = writer.host(out_rel)
                writer.clear(host, want_dir=False)
                if isinstance(item, HeredocSource):
                    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(item.content)
                    writer.finish_entry(host, stat.S_IFREG | item.mode, time.time_ns())
                else:
                    _copy_file_data(str(item.path), host)
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
                out_rel = f"{dest_rel}/{kept}".strip("/") if parents and kept else dest_rel
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
                out_rel = f"{dest_rel}/{os.path.dirname(kept)}".strip("/") if parents else dest_rel
                writer.ensure_dir(out_rel, plain=True)
                with open(host_src, "rb") as f:
                    # --chown owns every entry (BuildKit's unpack); without it the archive's owners stay
                    extract_archive(f, Path(writer.host(out_rel)), name=item, keep_owner=owner is None, owner=owner)
                written.append("/" + out_rel)
                continue
            if parents:
                out_rel = f"{dest_rel}/{kept}".strip("/")
                writer.parent_dirs(src_view, rel, kept, dest_rel, len(split_path(kept)) - 1)
            else:
                out_rel = f"{dest_rel}/{os.path.basename(rel)}".strip("/") if dest_dir else dest_rel
            writer.ensure_dir(os.path.dirname(out_rel))
            writer.copy_entry(src_view, real, out_rel, exclude, ignore)
            written.append("/" + out_rel)
    except RecursionError:
        raise BuildError(f"{where}COPY/ADD {item!r}: directories nested too deeply to copy") from None
    except OSError as exc:
        what = item if isinstance(item, str) else getattr(item, 'name', '?')
        raise BuildError(f"{where}COPY/ADD {what!r}: {exc.strerror or exc}"
                         + (f" ({exc.filename})" if exc.filename else "")) from None
    writer.close()
    return written


# -- archives ---------------------------------------------------------------------------------


def _open_decompressed(f: BinaryIO) -> BinaryIO:
    """A decompressing reader for gzip, bzip2, xz, zstd or plain data (by magic bytes)."""
    head = f.peek(6)[:6] if hasattr(f, "peek") else b""
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(f)  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True when `path` holds a tar archive, maybe compressed: what ADD unpacks (by content, as
    Docker decides, never by file name)."""
    try:
        with open(path, "rb") as raw:
            f = _open_decompressed(raw)  # type: ignore[arg-type]
            block = f.read(512)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return False
    except Exception:  # zstandard.ZstdError and friends: not an archive we can read
        return False
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def extract_archive(stream: BinaryIO, dest_dir: Path, *, name: str, keep_owner: bool = True,
                    owner: tuple[int, int] | None = None) -> None:
    """Unpack a (compressed) tar stream into `dest_dir`; nothing lands outside it.

    Member paths are cleaned as if `dest_dir` were `/`; symlinks already in `dest_dir` are
    followed only inside it; hard links must point inside it. Entries keep the archive's owners
    (`keep_owner`: ADD without --chown) or get `owner` / 0:0; directories the archive implies but
    does not list get `owner` / 0:0.
    """
    if not isinstance(stream, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)) and not hasattr(stream, "peek"):
        import io

        stream = io.BufferedReader(stream)  # type: ignore[arg-type]
    data = _open_decompressed(stream)
    dest_dir.mkdir(parents=True, exist_ok=True)
    view = RootView(dest_dir)
    writer = _Writer(dest_dir, None, owner, None)
    try:
        with tarfile.open(fileobj=data, mode="r|") as tar:
            for member in tar:
                _extract_member(tar, member, view, writer, keep_owner)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise BuildError(f"cannot unpack {name}: {exc}") from None
    writer.close()


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, view: RootView, writer: _Writer,
                    keep_owner: bool) -> None:
    parts = split_path(m.name)
    if not parts:
        return
    parent = view.resolve("/".join(parts[:-1]))
    writer.ensure_dir(parent)
    rel = f"{parent}/{parts[-1]}".lstrip("/")
    host = writer.host(rel)
    src_owner = (m.uid, m.gid) if keep_owner else None
    mtime_ns = int(m.mtime * 1_000_000_000)
    if m.isdir():
        writer.clear(host, want_dir=True)
        if not os.path.isdir(host):
            os.mkdir(host)
        writer.finish_entry(host, stat.S_IFDIR | m.mode, mtime_ns, src_owner=src_owner)
        return
    writer.clear(host, want_dir=False)
    if m.isreg():
        fileobj = tar.extractfile(m)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if fileobj is not None:
                shutil.copyfileobj(fileobj, out, 1 << 20)
        writer.finish_entry(host, stat.S_IFREG | m.mode, mtime_ns, src_owner=src_owner)
    elif m.issym():
        os.symlink(m.linkname, host)
        writer.finish_entry(host, stat.S_IFLNK | 0o777, mtime_ns, is_link=True, src_owner=src_owner)
    elif m.islnk():
        target = view.resolve(m.linkname, follow_last=False)
        target_host = writer.host(target)
        if not target or not os.path.lexists(target_host) or os.path.isdir(target_host):
            raise BuildError(f"hard link {m.name!r} -> {m.linkname!r} points to no file in the archive")
        os.link(target_host, host, follow_symlinks=False)
    elif m.ischr() or m.isblk() or m.isfifo():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        try:
            os.mknod(host, kind | m.mode, os.makedev(m.devmajor, m.devminor))
        except PermissionError:
            if os.geteuid() == 0:
                raise
            return
        writer.finish_entry(host, kind | m.mode, mtime_ns, src_owner=src_owner)


# -- URLs -------------------------------------------------------------------------------------


def fetch_url(url: str, into_dir: Path, *, checksum: str | None = None, timeout: float = 60) -> FetchedFile:
    """Download `url` (http or https) into `into_dir`, hashing as it streams; with `checksum`
    ("sha256:HEX", or sha384/sha512 as BuildKit's digests allow) a mismatch is a BuildError and
    nothing is kept."""
    import urllib.error
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or url.endswith(".git") or parsed.scheme.startswith("git"):
        raise BuildError(f"ADD {url}: only http(s) URLs of files are supported (git sources are not)",
                         hint="clone the repository in a RUN step, or ADD a tarball of it")
    m = re.fullmatch(r"(sha256|sha384|sha512):([0-9a-f]+)", checksum or "")
    if checksum is not None and not (m and len(m.group(2)) == {"sha256": 64, "sha384": 96, "sha512": 128}[m.group(1)]):
        raise BuildError(f"invalid --checksum={checksum}: expected sha256:<64 hex digits> (or sha384, sha512)")
    into_dir.mkdir(parents=True, exist_ok=True)
    req = urllib.request.Request(url, headers={"User-Agent": "pybuild"})
    h = hashlib.sha256()
    check = hashlib.new(m.group(1)) if m and m.group(1) != "sha256" else h
    fd, tmp = tempfile.mkstemp(dir=into_dir, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                if check is not h:
                    check.update(chunk)
                out.write(chunk)
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        os.unlink(tmp)
        raise BuildError(f"ADD {url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        os.unlink(tmp)
        reason = getattr(exc, "reason", None) or exc
        raise BuildError(f"ADD {url}: cannot download: {reason}") from None
    digest = "sha256:" + h.hexdigest()
    got = f"{check.name}:{check.hexdigest()}"
    if checksum is not None and checksum != got:
        os.unlink(tmp)
        raise BuildError(f"ADD {url}: checksum mismatch: expected {checksum}, got {got}")
    mtime = None
    if lm := headers.get("Last-Modified"):
        parsed_date = email.utils.parsedate_tz(lm)
        if parsed_date is not None:
            mtime = float(email.utils.mktime_tz(parsed_date))
    name = _url_filename(url)
    path = into_dir / digest.split(":")[1]
    os.replace(tmp, path)
    return FetchedFile(path, name, digest, mtime)


def _url_filename(url: str) -> str:
    """The name BuildKit gives a downloaded file: the last element of the URL's path as written
    (not of a redirect's target; never Content-Disposition), `__unnamed__` when there is none."""
    base = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path).rstrip("/"))
    return base if base not in ("", ".", "..") else "__unnamed__"

