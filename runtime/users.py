"""Resolve `USER name[:group]` / `uid[:gid]` through the image's own /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from runtime.errors import SandboxError


class ExecUser(NamedTuple):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _table(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(user: str, root: Path = Path("/")) -> ExecUser:
    """Docker's rules: a name must exist in passwd; a numeric uid need not (then gid 0, HOME /).
    No user (`""`, `":group"`) is uid 0, which needs no passwd entry either (an image without
    /etc/passwd runs as root). The group defaults to the user's primary group; supplementary
    groups come from /etc/group."""
    name, _, group = user.partition(":")
    name = name or "0"
    passwd = [r for r in _table(root / "etc/passwd") if len(r) >= 7]
    entry = next((r for r in passwd if r[0] == name), None)
    if entry is None and name.isdigit():
        entry = next((r for r in passwd if r[2] == name), None)
    if entry is None:
        if not name.isdigit():
            raise SandboxError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid, home, username = int(name), 0, "/", ""
    else:
        uid, gid, home, username = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
    groups_table = [r for r in _table(root / "etc/group") if len(r) >= 4]
    if group:
        row = next((r for r in groups_table if r[0] == group), None)
        if row is None and group.isdigit():
            gid = int(group)
        elif row is None:
            raise SandboxError(f"unable to find group {group}: no matching entries in group file")
        else:
            gid = int(row[2])
    supplementary = [gid]
    if username and not group:
        supplementary += [int(r[2]) for r in groups_table if username in r[3].split(",") and r[2].isdigit()]
    return ExecUser(uid, gid, tuple(dict.fromkeys(supplementary)), home)
