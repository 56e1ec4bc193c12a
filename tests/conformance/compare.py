"""Compare two snapshots (`snapshot.snapshot`) and say how pybuild's differs from a peer's.

    differences(ours, theirs) -> [str]       one line per difference, stable wording
    known(peer, line) -> str | None          the reason, when docs/conformance.md lists the difference
"""

from __future__ import annotations

import re
from typing import Any

FIELDS = ("type", "mode", "uid", "gid", "size", "sha256", "target", "xattrs", "hardlinks")

# (peer, pattern on a difference line, reason) - the table of docs/conformance.md
KNOWN: list[tuple[str, str, str]] = [
    ("*", r"^file (var/log/\S+|var/cache/debconf/\S+|var/cache/ldconfig/aux-cache|var/lib/dpkg/status-old"
          r"|etc/ssl/certs/ssl-cert-snakeoil\.pem|etc/ssl/private/ssl-cert-snakeoil\.key"
          r"|var/cache/apt/(src)?pkgcache\.bin|var/lib/apt/extended_states|var/lib/dpkg/triggers/\S+|var/lib/systemd/deb-systemd-helper-enabled/\S+"
          r"|usr/lib/python3\S*/__pycache__/\S+\.pyc|\S+/__pycache__/\S+\.pyc): (size|sha256)",
     "the file records the time it was written or the mtimes of others (logs, apt's package caches, "
     ".pyc stamps, a fresh key): two builds by the same builder differ"),
    ("buildkit", r"^step \d+ \(RUN .*\): (no layer in pybuild, peer's holds: C etc|only peer: C etc)$",
     "dockerd 20.10's BuildKit leaves the mount points of /etc/hosts and /etc/resolv.conf in every RUN's "
     "diff as a changed etc/, and writes that layer even for a RUN that changed nothing (newer BuildKit "
     "and pybuild record only what the step changed)"),
    ("buildkit", r"^file (etc/app: mode pybuild 0o640|tmp/sticky: mode pybuild 0o1777), peer 0o755$",
     "a directory made by `COPY --chmod=MODE src /dir/`: dockerd 20.10's BuildKit makes it 0755, BuildKit "
     "0.21 and later give it the --chmod mode, as pybuild does (fixtures copy-context-trees, copy-chmod-setuid)"),
    ("buildkit", r"^file (usr/local/bin/suid: mode pybuild 0o4755, peer 0o755|usr/local/bin/sgid: mode pybuild 0o2755, "
                 r"peer 0o755|tmp/sticky/x: mode pybuild 0o1777, peer 0o777)$",
     "`COPY --chmod=4755` (2755, 1777): dockerd 20.10's BuildKit keeps only the permission bits of an octal "
     "--chmod; pybuild applies setuid, setgid and sticky too, as a chmod(2) of that mode does (not checked "
     "against a newer BuildKit here: fixture copy-chmod-setuid)"),
    ("buildkit", r"^(step \d+ \(RUN .*\): (only peer: (A usr/lib/ctx|C usr|C usr/lib|A run/cache|C run)"
                 r"|no layer in pybuild, peer's holds: A usr/bin/tmp C etc C usr C usr/bin)"
                 r"|file (run/cache|usr/bin/tmp|usr/lib/ctx): only in peer)$",
     "RUN --mount targets the image lacks (fixture run-mount-targets): dockerd 20.10's BuildKit (0.8) "
     "leaves the empty mount points it made in the layer (made through the links: usr/lib/ctx for /lib/ctx, "
     "as pybuild resolves them); later BuildKit removes such stubs after the step, and pybuild never "
     "makes them in the layer"),
    ("buildkit", r"^(step \d+ \(WORKDIR [^)]*\): no layer in pybuild, peer's holds: nothing"
                 r"|history \d+: pybuild \['(RUN|WORKDIR) [^']*', True\], peer \['(RUN|WORKDIR) [^']*', False\])$",
     "dockerd 20.10's BuildKit writes a layer for a step that changed nothing (a WORKDIR that exists, a RUN "
     "that wrote nothing but its etc/ mount points) and marks it non-empty in the history; newer BuildKit "
     "and pybuild write no layer and mark the entry empty_layer"),
    ("buildkit", r"^history \d+: pybuild \['(EXPOSE \[|HEALTHCHECK \{|(COPY|ADD) --(chown|chmod|parents))",
     "history text: pybuild writes what the current Dockerfile frontend (1.19+) writes: EXPOSE as a list, "
     "HEALTHCHECK as a struct, COPY/ADD with --chown/--chmod/--parents; dockerd 20.10's frontend prints a "
     "map, a pointer, no flags"),
]


def _field_lines(path: str, a: list[Any], b: list[Any]) -> list[str]:
    out = []
    for name, x, y in zip(FIELDS, a, b):
        if x != y:
            show = (lambda v: oct(v)) if name == "mode" else repr
            out.append(f"file {path}: {name} pybuild {show(x)}, peer {show(y)}")
    return out


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k in ours["config"]:
        if ours["config"][k] != theirs["config"].get(k):
            out.append(f"config {k}: pybuild {ours['config'][k]!r}, peer {theirs['config'].get(k)!r}")
    oh, th = ours["history"], theirs["history"]
    if oh != th:
        for i in range(max(len(oh), len(th))):
            a = oh[i] if i < len(oh) else None
            b = th[i] if i < len(th) else None
            if a != b:
                out.append(f"history {i}: pybuild {a!r}, peer {b!r}")
    out += _layer_lines(ours, theirs)
    of, tf = ours["files"], theirs["files"]
    for path in sorted(set(of) | set(tf)):
        if path not in tf:
            out.append(f"file {path}: only in pybuild")
        elif path not in of:
            out.append(f"file {path}: only in peer")
        elif of[path] != tf[path]:
            out.extend(_field_lines(path, of[path], tf[path]))
    return out


def _by_step(snap: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    """(created_by, change set or None for an empty layer) per history entry."""
    layers = iter(snap["layers"])
    return [(created_by, None if empty else next(layers, [])) for created_by, empty in snap["history"]]


def _layer_lines(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Each step's change set against the peer's, steps paired by their place in the history."""
    out: list[str] = []
    a_steps, b_steps = _by_step(ours), _by_step(theirs)
    if len(a_steps) != len(b_steps):
        return [f"layers: history of {len(a_steps)} steps against {len(b_steps)}: "
                f"pybuild {len(ours['layers'])} layers, peer {len(theirs['layers'])}"]
    for i, ((step, a), (_, b)) in enumerate(zip(a_steps, b_steps)):
        step = step.split(" # ")[0][:60]
        if a is None and b is not None:
            out.append(f"step {i} ({step}): no layer in pybuild, peer's holds: {' '.join(b) or 'nothing'}")
        elif b is None and a is not None:
            out.append(f"step {i} ({step}): no layer in peer, pybuild's holds: {' '.join(a) or 'nothing'}")
        elif a is not None and b is not None:
            for line in sorted(set(a) - set(b)):
                out.append(f"step {i} ({step}): only pybuild: {line}")
            for line in sorted(set(b) - set(a)):
                out.append(f"step {i} ({step}): only peer: {line}")
    return out


def known(peer: str, line: str) -> str | None:
    for who, pattern, reason in KNOWN:
        if who in ("*", peer) and re.search(pattern, line):
            return reason
    return None


def unexplained(peer: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The differences no row of the known-differences table explains."""
    return [d for d in differences(ours, theirs) if known(peer, d) is None]
