"""The build context: where COPY and ADD read from, and the content checksums of what they read.

We are daemonless, so the context is never sent or copied anywhere: a directory is read in place,
lazily, only where a COPY asks. `pybuild build -` with a Dockerfile on stdin has no context; with
a tarball on stdin (plain, gzip, bzip2, xz or zstd) the tarball is extracted, safely, into a
scratch directory the caller owns, and taken as it is (`.dockerignore` filters a directory only).

Public API (pure library code: paths and plain data in, ContextError out):

    open_context(path, *, dockerfile=None, stdin=None, scratch_dir=None) -> BuildContext
    BuildContext
      .root: Path | None          the context directory (None: Dockerfile on stdin, no context)
      .dockerfile: bytes          the Dockerfile's content; .dockerfile_name for messages
      .ignore: PatternMatcher     from `<Dockerfile>.dockerignore` or `.dockerignore`
      .view: RootView             the context as a RootView (raises ContextError when no context)
      .resolve_sources(srcs, *, where="") -> list[str]
      .checksum(srcs, *, excludes=(), owner=None, reuse=False) -> str   "sha256:..." for the cache key
      .checksum_table(srcs, *, excludes=(), owner=None, reuse=False) -> (digest, {path: "sha256:..."})
                                  the same digest plus one checksum per entry (for `explain`)
    expand_sources(view, srcs, *, ignore=None, where="") -> list[str]
        wildcards (Go filepath.Match per path segment) expanded, `..` and absolute paths made
        root-relative, each result an existing path ("" is the root itself); sorted per source.
        A `/./` pivot in a source (for `--parents`) is kept in its results.
    checksum_sources(view, rels, *, ignore=None, excludes=(), owner=None, preserve_owner=False,
                     statcache=None, table=None) -> str
        the digest over every entry COPY would take from `rels`: path, type, permission bits,
        symlink target, file content (sha256), the owner it will get; never mtimes. Works for the
        context and for another stage's rootfs (`COPY --from`, keyed on the content copied).

`where` is a prefix for error messages ("Dockerfile:7: ") supplied by the caller.

Docker's rules kept: `.dockerignore` never hides the Dockerfile from the builder, but COPY obeys
it for every file (the Dockerfile and `.dockerignore` themselves included); an excluded path is
absent for COPY ("excluded by .dockerignore" says why); below an excluded directory the walk
looks for exceptions exactly where BuildKit's does. Symlinks in sources resolve inside the
context (an absolute target starts at the context root), so nothing outside it is ever read.
A file's content is read once per (inode, size, mtime, ctime): `cache.stat.StatCache` keeps the
digests between runs, per root, and forgets deleted files whenever the whole context is walked.
"""

from __future__ import annotations

import gc
import io
import operator
import os
import stat
import sys
from pathlib import Path

from builder.build.dockerignore import PatternMatcher, find_ignore_file, go_match, parse_ignore_file
from builder.build.fsview import RootView, split_path
from builder.cache.stat import StatCache
from builder.errors import ContextError
from builder.util.sha import sha256

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import BinaryIO, Iterable, Sequence

__all__ = [
    "BuildContext",
    "checksum_sources",
    "expand_sources",
    "has_wildcards",
    "open_context",
]

_WILDCARD_CHARS = "*?[\\"


def has_wildcards(source: str) -> bool:
    return any(c in source for c in _WILDCARD_CHARS)


# -- opening a context --------------------------------------------------------------------


class BuildContext:
    """A build context and its Dockerfile; see the module docstring.

    An immutable plain class, not a dataclass: `dataclasses` imports `inspect`, which costs ~7 ms
    of the cached no-op rebuild's 100 ms budget.
    """

    __slots__ = ("root", "dockerfile", "dockerfile_name", "ignore", "ignore_file", "scratch", "frozen", "trace",
                 "_walks")
    root: Path | None
    dockerfile: bytes
    dockerfile_name: str
    ignore: PatternMatcher
    ignore_file: Path | None
    scratch: bool  # extracted from stdin: no stat cache kept for a directory used once
    frozen: bool  # nobody changes its files, ever (pybuild serve's unpacked contexts): COPY may hard-link them
    trace: dict[str, tuple[int, int, int, int, int] | None]  # host path -> stat: what the walks looked at
    _walks: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[int, int] | None], list[_Entry]]  # reuse=True walks

    def __init__(self, root: Path | None, dockerfile: bytes, dockerfile_name: str,
                 ignore: PatternMatcher | None = None, ignore_file: Path | None = None, scratch: bool = False,
                 frozen: bool = False) -> None:
        for name, value in (("root", root), ("dockerfile", dockerfile), ("dockerfile_name", dockerfile_name),
                            ("ignore", PatternMatcher([]) if ignore is None else ignore),
                            ("ignore_file", ignore_file), ("scratch", scratch), ("frozen", frozen), ("trace", {}),
                            ("_walks", {})):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"BuildContext is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return (f"BuildContext(root={self.root!r}, dockerfile_name={self.dockerfile_name!r}, "
                f"ignore_file={self.ignore_file!r}, scratch={self.scratch!r})")

    @property
    def view(self) -> RootView:
        if self.root is None:
            raise ContextError(
                "COPY and ADD cannot read local files: the Dockerfile came from stdin without a context",
                hint="pass a directory as the context (`pybuild build -f - DIR`), or a tarball on stdin",
            )
        return RootView(self.root, trace=self.trace)

    def resolve_sources(self, sources: Sequence[str], *, where: str = "") -> list[str]:
        """COPY/ADD sources expanded and checked against the context and `.dockerignore`."""
        return expand_sources(self.view, sources, ignore=self.ignore, where=where)

    def checksum(self, rels: Sequence[str], *, excludes: Sequence[str] = (),
                 owner: tuple[int, int] | None = None, table: dict[str, str] | None = None,
                 reuse: bool = False) -> str:
        """Content checksum of resolved sources, using the persistent stat cache.

        `reuse`: take the walk of an earlier `reuse=True` call with the same arguments, and keep
        this one (a build's no-op memo check and its step key then share one walk of the context)."""
        key = (tuple(rels), tuple(excludes), owner)
        entries = self._walks.get(key) if reuse else None
        if entries is None:
            view = self.view
            cache = StatCache(None) if self.scratch else StatCache.for_root(view)
            cache.frozen = self.frozen  # its files' ctimes change when COPY hard-links them
            if "" in rels:
                cache.seen = set()  # the whole context is walked: forget files that are gone
            try:
                entries = _walk_sources(view, rels, self.ignore, excludes, False, owner, cache, self.trace)
            finally:
                cache.save()
            if reuse:
                self._walks[key] = entries
        return _digest(entries, owner, table)

    def walked_bytes(self) -> int:
        """The size of the regular files the kept (`reuse=True`) walks read, each counted once:
        what BuildKit reports as `transferring context`."""
        sizes: dict[str, int] = {}
        for entries in self._walks.values():
            for e in entries:
                if e[1] == "f":
                    sizes[e[0]] = e[4].st_size
        return sum(sizes.values())

    def checksum_table(self, rels: Sequence[str], *, excludes: Sequence[str] = (),
                       owner: tuple[int, int] | None = None, reuse: bool = False) -> tuple[str, dict[str, str]]:
        """`checksum()` plus the per-file table {path: checksum} from the same walk."""
        table: dict[str, str] = {}
        return self.checksum(rels, excludes=excludes, owner=owner, table=table, reuse=reuse), table


def open_context(path: str, *, dockerfile: str | None = None, stdin: BinaryIO | None = None,
                 scratch_dir: Path | None = None, frozen: bool = False) -> BuildContext:
    """Open the context `path` (a directory, or `-` for stdin) and read its Dockerfile.

    `dockerfile` is `-f`: relative to the current directory for a directory context (as the
    docker CLI does), relative to the tarball's root for a tarball on stdin, `-` for stdin.
    A tarball on stdin is extracted into `scratch_dir` (required then; the caller removes it).
    `frozen`: the directory's files are never changed (see `BuildContext.frozen`).
    """
    if path == "-":
        return _open_stdin(stdin or sys.stdin.buffer, dockerfile, scratch_dir)
    root = Path(path)
    if not root.is_dir():
        raise ContextError(f'unable to prepare context: path "{path}" not found or not a directory')
    root = root.resolve()
    if dockerfile == "-":
        data = (stdin or sys.stdin.buffer).read()
        ignore_path = find_ignore_file(root, None)
        return BuildContext(root, data, "Dockerfile (stdin)", _load_ignore(ignore_path), ignore_path)
    df_path = Path(dockerfile).absolute() if dockerfile else root / "Dockerfile"
    data = _read_dockerfile(df_path, dockerfile or "Dockerfile")
    ignore_path = find_ignore_file(root, df_path)
    return BuildContext(root, data, str(dockerfile or "Dockerfile"), _load_ignore(ignore_path), ignore_path,
                        frozen=frozen)


def _read_dockerfile(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ContextError(f"cannot read Dockerfile {shown}: no such file") from None
    except IsADirectoryError:
        raise ContextError(f"cannot read Dockerfile {shown}: it is a directory") from None
    except OSError as exc:
        raise ContextError(f"cannot read Dockerfile {shown}: {exc.strerror}") from None


def _load_ignore(path: Path | None) -> PatternMatcher:
    if path is None:
        return PatternMatcher([])
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ContextError(f"cannot read {path}: {exc.strerror}") from None
    return PatternMatcher(parse_ignore_file(text, filename=path.name), source=path.name)


def _open_stdin(stdin: BinaryIO, dockerfile: str | None, scratch_dir: Path | None) -> BuildContext:
    from builder.oci import compress  # only needed for a context from stdin

    head = stdin.read(512)
    if compress.sniff(head) is None and not compress.is_tar(head):  # a Dockerfile, not a (compressed) tarball
        return BuildContext(None, head + stdin.read(), "Dockerfile (stdin)")
    if scratch_dir is None:
        import tempfile

        scratch_dir = Path(tempfile.mkdtemp(prefix="context-"))
    from builder.build.files.extract import extract_archive  # only needed for a tarball context
    from builder.util.streams import Prefixed

    stream = io.BufferedReader(Prefixed(head, stdin), 1 << 20)
    extract_archive(stream, scratch_dir, name="build context on stdin", keep_owner=False)
    name = dockerfile or "Dockerfile"
    data = _read_dockerfile(scratch_dir.joinpath(*split_path(name)), name)
    # no .dockerignore: it only filters a local directory (BuildKit and docker's legacy builder
    # take a tarball context as it is, as they do a git or URL context)
    return BuildContext(scratch_dir, data, name, scratch=True)


# -- resolving sources ------------------------------------------------------------------------


def _visible(rel: str, ignore: PatternMatcher | None, is_dir: bool) -> bool:
    if not rel or not ignore or not ignore.matches(rel):
        return True
    return is_dir and ignore.may_reinclude_under(rel)


def expand_sources(view: RootView, sources: Sequence[str], *, ignore: PatternMatcher | None = None,
                   where: str = "") -> list[str]:
    """Expand COPY/ADD sources in `view`; see the module docstring. Raises ContextError naming
    the first source that matches nothing (and saying so when `.dockerignore` excludes it)."""
    out: list[str] = []
    for source in sources:
        matches = _expand_one(view, source, ignore)
        if not matches:
            raise ContextError(f"{where}{_missing_message(view, source, ignore)}")
        out.extend(_keep_pivot(source, matches))
    return out


def _keep_pivot(source: str, matches: list[str]) -> list[str]:
    """Put back a `/./` pivot (`COPY --parents a/./b/*`) into each expanded match."""
    body = source
    while body.startswith("./"):
        body = body[2:]
    body = body.lstrip("/")
    if "/./" not in body:
        return matches
    n = len(split_path(body.split("/./", 1)[0]))
    out = []
    for m in matches:
        parts = m.split("/")
        out.append("/".join(parts[:n]) + "/./" + "/".join(parts[n:]))
    return out


def _missing_message(view: RootView, source: str, ignore: PatternMatcher | None) -> str:
    if has_wildcards(source):
        return f"COPY/ADD source {source!r}: no files match the pattern"
    rel = "/".join(split_path(source))
    if ignore and view.lstat(view.resolve(rel)) is not None:
        return f"COPY/ADD source {source!r} is excluded by .dockerignore"
    return f"COPY/ADD source {source!r}: not found in the build context"


def _expand_one(view: RootView, source: str, ignore: PatternMatcher | None) -> list[str]:
    parts = split_path(source)
    if not has_wildcards(source):
        rel = "/".join(parts)
        resolved = view.resolve(rel)
        st = view.lstat(resolved)
        if st is None:
            return []
        if not _visible(rel, ignore, stat.S_ISDIR(st.st_mode)) or not _visible(resolved, ignore, stat.S_ISDIR(st.st_mode)):
            return []
        return [rel]
    found = [""]
    for part in parts:
        nxt: list[str] = []
        for base in found:
            resolved = view.resolve(base)
            st = view.lstat(resolved)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            if has_wildcards(part):
                names = [n for n in view.listdir(resolved) if go_match(part, n)]
            else:
                names = [part] if view.lstat(f"{resolved}/{part}".lstrip("/")) is not None else []
            for name in names:
                rel = f"{base}/{name}".lstrip("/")
                real = view.resolve(rel)
                est = view.lstat(real)
                if est is not None and _visible(real, ignore, stat.S_ISDIR(est.st_mode)):
                    nxt.append(rel)
        found = nxt
    return sorted(found)


# -- checksums ------------------------------------------------------------------------------


def _hash_file(path: str) -> bytes:
    try:
        import hashlib  # OpenSSL's sha256, for file contents (only on a stat cache miss)

        with open(path, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            if st.st_blocks * 512 >= st.st_size:
                return hashlib.file_digest(f, "sha256").digest()
            from builder.util.sparse import hole_reader  # a sparse file: its holes are hashed, not read

            h, read = hashlib.sha256(), hole_reader(f.fileno())
            while chunk := read(1 << 20):
                h.update(chunk)
            return h.digest()
    except OSError as exc:
        raise ContextError(f"cannot read {path}: {exc.strerror}") from None


# An entry is a small list, not an object: the warm path builds 20,000 of them per rebuild.
# [label, kind, mode, extra, stat]: kind f/d/l/c/b/p; extra is the link target, the device
# numbers, or (files) the host path until _hash_contents replaces it by the content digest.
_Entry = list
_BY_NAME = operator.attrgetter("name")


def checksum_sources(view: RootView, rels: Sequence[str], *, ignore: PatternMatcher | None = None,
                     excludes: Sequence[str] = (), owner: tuple[int, int] | None = None,
                     preserve_owner: bool = False, statcache: StatCache | None = None,
                     table: dict[str, str] | None = None) -> str:
    """sha256 over what COPY takes from the resolved sources `rels` (see the module docstring).

    `preserve_owner` (COPY --from without --chown) adds each entry's uid:gid to what is hashed.
    `table`, when given, is filled from the same walk with {path: "sha256:..." of that entry's
    kind, mode, link target or content digest, and owner} (the per-file inputs of a build record).
    """
    return _digest(_walk_sources(view, rels, ignore, excludes, preserve_owner, owner, statcache), owner, table)


def _walk_sources(view: RootView, rels: Sequence[str], ignore: PatternMatcher | None, excludes: Sequence[str],
                  preserve_owner: bool, owner: tuple[int, int] | None, statcache: StatCache | None,
                  trace: dict[str, tuple[int, int, int, int, int] | None] | None = None) -> list[_Entry]:
    """The entries under `rels`, sorted, each with its content digest (see `checksum_sources`);
    `trace` gets the stat of every directory walked and entry met (see `RootView.trace`)."""
    exclude = PatternMatcher(list(excludes), source="--exclude") if excludes else None
    entries: list[_Entry] = []
    gc_was_on = gc.isenabled()
    gc.disable()  # tens of thousands of small lists and no cycles: the collector only costs time
    try:
        for rel in rels:
            _collect(view, rel, ignore or None, exclude, entries, trace)
    except RecursionError:
        raise ContextError(f"COPY/ADD sources {list(rels)!r}: directories nested too deeply to walk") from None
    finally:
        if gc_was_on:
            gc.enable()
    if preserve_owner and owner is None:
        for e in entries:
            e[0] += f"\0{e[4].st_uid}:{e[4].st_gid}"
    _hash_contents(entries, statcache, str(view.root) if view.single else None)
    return entries


def _digest(entries: list[_Entry], owner: tuple[int, int] | None, table: dict[str, str] | None) -> str:
    if table is not None:
        own = f"\0{owner[0]}:{owner[1]}" if owner is not None else ""
        sha = sha256
        for e in entries:
            line = f"{e[1]}\0{e[2]:o}\0{e[3]}{own}".encode("utf-8", "surrogateescape")
            table[e[0]] = "sha256:" + sha(line).hexdigest()
    h = sha256()
    h.update(b"pybuild-copy-checksum-v1\n")
    if owner is not None:
        h.update(f"owner {owner[0]}:{owner[1]}\n".encode())
    h.update("".join([f"{e[0]}\0{e[1]}\0{e[2]:o}\0{e[3]}\n" for e in entries]).encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


def _collect(view: RootView, rel: str, ignore: PatternMatcher | None, exclude: PatternMatcher | None,
             out: list[_Entry], trace: dict[str, tuple[int, int, int, int, int] | None] | None = None) -> None:
    real = view.resolve(rel)
    st = view.lstat(real)
    if st is None:
        raise ContextError(f"COPY/ADD source {rel!r} disappeared from the build context")
    label = rel or "."
    if exclude and exclude.matches(os.path.basename(rel) or "."):
        return
    if not stat.S_ISDIR(st.st_mode):
        out.append(_entry(view, label, real, st))
        return
    out.append([label, "d", stat.S_IMODE(st.st_mode), "", st])
    if view.single:
        istate = ignore.state_of(real)[1] if ignore is not None else ()
        _walk_fast(str(view.root.joinpath(*split_path(real))), real, label, "", ignore, exclude, out, istate, trace)
    else:
        _walk_view(view, real, label, "", ignore, exclude, out)


def _entry(view: RootView, label: str, real: str, st: os.stat_result) -> _Entry:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return [label, "f", stat.S_IMODE(mode), str(view.host_path(real)), st]
    if stat.S_ISLNK(mode):
        return [label, "l", stat.S_IMODE(mode), view.readlink(real), st]
    if stat.S_ISDIR(mode):
        return [label, "d", stat.S_IMODE(mode), "", st]
    return [label, stat.filemode(mode)[0], stat.S_IMODE(mode), f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}", st]


def _walk_fast(host_dir: str, real: str, label: str, sub: str, ignore: PatternMatcher | None,
               exclude: PatternMatcher | None, out: list[_Entry], istate: tuple[bool, ...] = (),
               trace: dict[str, tuple[int, int, int, int, int] | None] | None = None) -> None:
    """Walk one directory of a single-root view with os.scandir (the hot path of a rebuild).

    `istate` is the ignore matcher's state for this directory (see PatternMatcher.match_child);
    `trace` gets every entry's stat (ignored ones too: their directory's stat covers them)."""
    try:
        with os.scandir(host_dir) as it:
            items = list(it)
    except OSError as exc:
        raise ContextError(f"cannot read directory {label!r} of the build context: {exc.strerror}") from None
    items.sort(key=_BY_NAME)
    filtered = ignore is not None or exclude is not None
    append = out.append
    for item in items:
        name = item.name
        lbl = label + "/" + name
        child_state = istate
        if filtered:
            ctx_path = f"{real}/{name}" if real else name
            sub_path = f"{sub}/{name}" if sub else name
            excluded = False
            if ignore is not None:
                excluded, child_state = ignore.match_child(ctx_path, istate)
            if excluded:
                if item.is_dir(follow_symlinks=False) and ignore.may_reinclude_under(ctx_path):  # type: ignore[union-attr]
                    before = len(out)  # walk it: an exception may bring something back
                    _walk_fast(item.path, ctx_path, lbl, sub_path, ignore, exclude, out, child_state, trace)
                    if len(out) > before:
                        st = item.stat(follow_symlinks=False)
                        out.insert(before, [lbl, "d", stat.S_IMODE(st.st_mode), "", st])
                continue
            if exclude is not None and exclude.matches(sub_path):
                continue
        else:
            ctx_path = sub_path = ""
        st = item.stat(follow_symlinks=False)
        mode = st.st_mode
        if trace is not None and item.path not in trace:  # the first look (see RootView.trace)
            trace[item.path] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, mode)
        if S_ISREG(mode):
            append([lbl, "f", mode & 0o7777, item.path, st])
        elif S_ISDIR(mode):
            append([lbl, "d", mode & 0o7777, "", st])
            if filtered:
                _walk_fast(item.path, ctx_path, lbl, sub_path, ignore, exclude, out, child_state, trace)
            else:
                _walk_fast(item.path, "", lbl, "", None, None, out, (), trace)
        elif S_ISLNK(mode):
            append([lbl, "l", mode & 0o7777, os.readlink(item.path), st])
        else:
            append([lbl, stat.filemode(mode)[0], mode & 0o7777, f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}", st])


S_ISREG, S_ISDIR, S_ISLNK = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK


def _walk_view(view: RootView, real: str, label: str, sub: str, ignore: PatternMatcher | None,
               exclude: PatternMatcher | None, out: list[_Entry]) -> None:
    """The same walk for a layered view (another stage or an image, not mounted)."""
    for name in view.listdir(real):
        child = f"{real}/{name}" if real else name
        sub_path = f"{sub}/{name}" if sub else name
        st = view.lstat(child)
        if st is None:
            continue
        if exclude and exclude.matches(sub_path):
            continue
        if ignore and ignore.matches(child) and not (stat.S_ISDIR(st.st_mode) and ignore.may_reinclude_under(child)):
            continue
        out.append(_entry(view, f"{label}/{name}", child, st))
        if stat.S_ISDIR(st.st_mode):
            _walk_view(view, child, f"{label}/{name}", sub_path, ignore, exclude, out)


def _hash_contents(entries: Iterable[_Entry], statcache: StatCache | None, root: str | None) -> None:
    """Replace each file entry's host path by its sha256, from the stat cache where it is fresh.

    Cache keys are host paths relative to `root` (a single-root view) or absolute."""
    cut = len(root) + 1 if root else 0
    cached = statcache.entries if statcache is not None else {}
    frozen = statcache is not None and statcache.frozen
    get = cached.get
    todo: list[_Entry] = []
    seen = statcache.seen if statcache is not None else None
    for e in entries:
        if e[1] != "f":
            continue
        st = e[4]
        key = e[3][cut:]
        if seen is not None:
            seen.add(key)
        hit = get(key)
        if hit is not None and hit[2] == st.st_mtime_ns and (hit[3] == st.st_ctime_ns or frozen) \
                and hit[0] == st.st_ino and hit[1] == st.st_size:
            e[3] = hit[4].hex()
        else:
            todo.append(e)
    if not todo:
        return
    paths = [e[3] for e in todo]
    if len(todo) > 8:
        from concurrent.futures import ThreadPoolExecutor  # imported only when files need reading

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(_hash_file, paths, chunksize=16))
    else:
        digests = [_hash_file(p) for p in paths]
    for e, path, digest in zip(todo, paths, digests):
        if statcache is not None:
            statcache.store(path[cut:], e[4], digest)
        e[3] = digest.hex()
