"""`--chown` and `--chmod` of COPY and ADD: owners looked up in the image, modes parsed and applied.

    resolve_owner(spec, target, *, lenient=False) -> (uid, gid)
        "user[:group]", numeric or names from the target's /etc/passwd and /etc/group
    parse_chmod(spec) -> Chmod
        octal ("755") or symbolic ("u+x,go-w"); `Chmod.apply(mode, is_dir)` gives the new bits
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass

from builder.build.fsview import RootView, ViewLike, as_view
from builder.errors import BuildError

__all__ = ["Chmod", "parse_chmod", "resolve_owner"]


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
    view = as_view(target)
    user, _, group = spec.partition(":")
    if not user:
        raise BuildError(f"invalid --chown={spec}: missing user")
    if user.isascii() and user.isdigit():
        uid = gid = int(user)  # a bare UID means the same GID (Docker's rule, whatever passwd says)
    else:
        entry = next((f for f in _read_db(view, "etc/passwd") if f[0] == user and len(f) > 3), None)
        if entry is None and not lenient:
            raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = (_id(entry[2], spec), _id(entry[3], spec)) if entry else (0, 0)
    if group:
        if group.isascii() and group.isdigit():
            gid = int(group)
        else:
            gentry = next((f for f in _read_db(view, "etc/group") if f[0] == group and len(f) > 2), None)
            if gentry is None and not lenient:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
            gid = _id(gentry[2], spec) if gentry else gid
    for n in (uid, gid):
        if n > MAX_ID:
            raise BuildError(f"invalid user {spec}: id {n} is out of range (at most {MAX_ID})")
    return uid, gid


MAX_ID = 0xFFFFFFFE  # uid_t is 32 bits and (uid_t)-1 means "unchanged"


def _id(text: str, spec: str) -> int:
    """A uid or gid from /etc/passwd or /etc/group."""
    if not (text.isascii() and text.isdigit()):
        raise BuildError(f"invalid user {spec}: the passwd/group entry has the id {text!r}")
    return int(text)


def _read_db(view: RootView | None, rel: str) -> list[list[str]]:
    if view is None:
        return []
    real = view.resolve(rel)
    path = view.host_path(real)
    if path is None or not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
