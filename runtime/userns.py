"""Rootless mode: pybuild as an ordinary user, inside a user namespace that maps the caller to root.

    enter(mode)        called once by the CLI before any thread exists: unshare(CLONE_NEWUSER) and
                       write the id maps; from then on the process is uid 0 *in its namespace*, with
                       every capability over namespaces it creates and none over the host
    in_user_namespace  whether this process (or an ancestor) did that: the runtime then mounts
                       overlays with `userxattr`, binds device nodes instead of making them, keeps
                       the host's locked mount flags, and uses slirp4netns instead of the bridge

Two mappings, as buildah's:
- `auto` (the default): container id 0 is the caller, ids 1.. are the caller's ranges of
  /etc/subuid and /etc/subgid, written by Debian's setuid `newuidmap`/`newgidmap` (package uidmap).
  Files keep their in-image owners: on disk they belong to the sub-ids, and read back inside the
  namespace they are the image's ids again, so a layer written here is the one a root build writes.
- `single`: only id 0 (the caller), written by the process itself (no helper, `setgroups` denied).
  An image that needs any other id fails where it needs it, naming the id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from runtime import _linux
from runtime.errors import NamespaceError

__all__ = ["IdMap", "MODES", "Plan", "enter", "in_user_namespace", "plan", "rootless_requested", "enter_rootless", "subid_ranges",
           "setgroups_allowed", "check_mapped", "unmapped_owner", "UNMAPPED_HINT", "delegated_cgroup",
           "owner_checker"]

MODES = ("auto", "single")
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
_IDENTITY = ("0", "0", "4294967295")


class IdMap(NamedTuple):
    """One line of /proc/PID/uid_map: `size` ids from `container` inside are `host` outside."""

    container: int
    host: int
    size: int


class Plan(NamedTuple):
    uids: tuple[IdMap, ...]
    gids: tuple[IdMap, ...]
    mode: str


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def rootless_requested() -> bool:
    """Rootless when not root, or when `PYBUILD_ROOTLESS` asks for it (so root can test it)."""
    return os.geteuid() != 0 or _truthy(os.environ.get("PYBUILD_ROOTLESS"))


_in_userns: bool | None = None


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the host's (its uid map is not the
    identity over every id)."""
    global _in_userns
    if _in_userns is None:
        try:
            with open("/proc/self/uid_map") as f:
                lines = f.read().split("\n")
            _in_userns = tuple(lines[0].split()) != _IDENTITY or bool(lines[1].strip())
        except (OSError, IndexError):
            _in_userns = False
    return _in_userns


def setgroups_allowed() -> bool:
    """False in a namespace whose gid map was written without a helper (`setgroups` is denied)."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def subid_ranges(path: Path, name: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges of /etc/subuid or /etc/subgid for the user `name` (or its number)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    ranges = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


def _maps(caller: int, ranges: list[tuple[int, int]]) -> tuple[IdMap, ...]:
    maps = [IdMap(0, caller, 1)]
    inside = 1
    for start, count in ranges:
        maps.append(IdMap(inside, start, count))
        inside += count
    return tuple(maps)


def plan(mode: str = "auto", uid: int | None = None, gid: int | None = None, name: str | None = None,
         subuid: Path = SUBUID, subgid: Path = SUBGID) -> Plan:
    """The id maps for the caller: its sub-id ranges (`auto`) or only itself (`single`)."""
    if mode not in MODES:
        raise NamespaceError(f"unknown --userns mode {mode!r}", hint="use auto or single")
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if name is None:
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
    if mode == "single":
        return Plan((IdMap(0, uid, 1),), (IdMap(0, gid, 1),), mode)
    uranges = subid_ranges(subuid, name, uid)
    granges = subid_ranges(subgid, name, uid)
    for path, found in ((subuid, uranges), (subgid, granges)):
        if not found:
            raise NamespaceError(
                f"rootless: user {name} has no subordinate id range in {path}",
                hint=f"as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}; "
                     "or pass --userns=single (only uid 0 inside images)")
    return Plan(_maps(uid, uranges), _maps(gid, granges), mode)


def _map_args(maps: tuple[IdMap, ...]) -> list[str]:
    return [str(n) for m in maps for n in m]


def enter(mode: str = "auto") -> Plan:
    """Move this process into a new user namespace mapped by `plan(mode)`. Call before any thread
    starts (the kernel refuses unshare(CLONE_NEWUSER) to a threaded process)."""
    p = plan(mode)
    os.environ.setdefault("PYBUILD_RUN_DIR", str(_run_dir()))
    if p.mode == "single" or os.geteuid() == 0:
        _linux.unshare(_linux.CLONE_NEWUSER)
        if p.mode == "single":
            _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", "".join(f"{m.container} {m.host} {m.size}\n" for m in p.uids))
        _write("/proc/self/gid_map", "".join(f"{m.container} {m.host} {m.size}\n" for m in p.gids))
    else:
        _map_with_helpers(p)
    global _in_userns
    _in_userns = True
    os.environ["PYBUILD_ROOTLESS"] = "1"  # what children (a detached container's supervisor) see
    return p


def enter_rootless() -> Plan | None:
    """Enter the user namespace (mode $PYBUILD_USERNS, default auto) if rootless and not yet in it."""
    if not rootless_requested() or in_user_namespace():
        return None
    return enter(os.environ.get("PYBUILD_USERNS") or "auto")


def _run_dir() -> Path:
    """Scratch of the user's containers: $XDG_RUNTIME_DIR/pybuild, else /dev/shm/pybuild-UID (a tmpfs
    either way; the executor refuses it unless it is ours and 0700)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.stat(xdg).st_uid == os.getuid():
        return Path(xdg) / "pybuild"
    return Path(f"/dev/shm/pybuild-{os.getuid()}")


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise NamespaceError(f"rootless: cannot write {path}: {exc.strerror}") from None


def _map_with_helpers(p: Plan) -> None:
    """newuidmap/newgidmap must run outside the new namespace (their setuid bit means nothing inside):
    a child forked before unshare writes our maps once we are in it."""
    import shutil

    tools = [shutil.which(t) for t in ("newuidmap", "newgidmap")]
    if None in tools:
        raise NamespaceError("rootless: newuidmap/newgidmap not found",
                             hint="install them as root: apt-get install uidmap")
    me = os.getpid()
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - exits by os._exit
        code = 1
        try:
            os.close(go_w)
            os.close(err_r)
            if os.read(go_r, 1) == b"g":
                code = 0
                for tool, maps in ((tools[0], p.uids), (tools[1], p.gids)):
                    pid = os.posix_spawn(tool, [tool, str(me), *_map_args(maps)], os.environ,  # type: ignore[arg-type]
                                         file_actions=[(os.POSIX_SPAWN_DUP2, err_w, 2)])
                    _, status = os.waitpid(pid, 0)
                    if os.waitstatus_to_exitcode(status) != 0:
                        code = 1
                        break
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(err_w)
    try:
        _linux.unshare(_linux.CLONE_NEWUSER)
    except OSError as exc:
        os.close(go_w)
        os.waitpid(child, 0)
        os.close(err_r)
        raise NamespaceError(f"rootless: cannot create a user namespace: {exc.strerror}",
                             hint="check /proc/sys/user/max_user_namespaces") from None
    os.write(go_w, b"g")
    os.close(go_w)
    chunks = []
    while data := os.read(err_r, 4096):
        chunks.append(data)
    os.close(err_r)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        message = b"".join(chunks).decode(errors="replace").strip().splitlines()
        raise NamespaceError(f"rootless: newuidmap/newgidmap failed: {message[-1] if message else 'no message'}",
                             hint=f"check the ranges of {SUBUID} and {SUBGID} for this user")


def _mapped(path: str) -> list[tuple[int, int]]:
    """The (first, count) ranges of ids that exist inside this namespace."""
    try:
        with open(path) as f:
            return [(int(a), int(c)) for a, _, c in (line.split() for line in f if line.strip())]
    except (OSError, ValueError):
        return [(0, 1 << 32)]


def check_mapped(uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
    """Refuse, naming it, an id this namespace cannot represent (a USER of an image built with
    `--userns=single`, or beyond the user's sub-id ranges)."""
    if not in_user_namespace():
        return
    for kind, path, ids in (("uid", "/proc/self/uid_map", (uid,)), ("gid", "/proc/self/gid_map", (gid, *groups))):
        ranges = _mapped(path)
        for i in ids:
            if not any(first <= i < first + count for first, count in ranges):
                raise NamespaceError(unmapped_message(kind, i), hint=UNMAPPED_HINT)


UNMAPPED_HINT = ("give the user subordinate ids (usermod --add-subuids/--add-subgids) and use --userns=auto, "
                 "or build as root")


def unmapped_message(kind: str, value: int) -> str:
    """The one wording of 'this id does not exist in the rootless namespace'."""
    return f"rootless: {kind} {value} is not mapped in the user namespace (mapped: {mapped_summary(kind)})"


def unmapped_owner(uid: int | None, gid: int | None) -> str:
    """The message for an owner `uid:gid` that this namespace cannot represent (None: not known which)."""
    for kind, value in (("uid", uid), ("gid", gid)):
        if value is not None and not any(a <= value < a + c for a, c in _mapped(f"/proc/self/{kind}_map")):
            return unmapped_message(kind, value)
    return f"rootless: an owner id is not mapped in the user namespace (mapped: {mapped_summary('uid')})"


def owner_checker() -> Callable[[int, int], str | None]:
    """A fast check of many owners (the entries of a layer): the message for an unmapped one, else None."""
    uids, gids = _mapped("/proc/self/uid_map"), _mapped("/proc/self/gid_map")

    def check(uid: int, gid: int) -> str | None:
        if not any(a <= uid < a + c for a, c in uids):
            return unmapped_message("uid", uid)
        if not any(a <= gid < a + c for a, c in gids):
            return unmapped_message("gid", gid)
        return None

    return check


def mapped_summary(kind: str = "uid") -> str:
    ranges = _mapped(f"/proc/self/{kind}_map")
    return ", ".join(f"{a}" if c == 1 else f"{a}-{a + c - 1}" for a, c in ranges)


def delegated_cgroup(root: Path) -> Path | None:
    """Rootless: the cgroup v2 directory delegated to this user where pybuild may create its own
    (the parent of our own cgroup, when it is v2 and ours to write: systemd's user slice), else None."""
    if not (root / "cgroup.controllers").exists():
        return None  # v1 or hybrid: nothing is ever delegated to a user there
    try:
        with open("/proc/self/cgroup") as f:
            line = next((ln for ln in f if ln.startswith("0::")), "")
    except OSError:
        return None
    own = line[3:].strip().lstrip("/")
    if not own:
        return None
    parent = (root / own).parent
    return parent if os.access(parent, os.W_OK) and os.access(parent / "cgroup.subtree_control", os.W_OK) else None
