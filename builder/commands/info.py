"""`pybuild info`: how pybuild runs here: root or rootless, id maps, store, overlay driver,
network and cgroups (what `docker info` / `podman info` tell about the host)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")


def _maps(kind: str) -> str:
    try:
        lines = Path(f"/proc/self/{kind}_map").read_text().split("\n")
    except OSError:
        return "?"
    parts = []
    for line in filter(None, (ln.split() for ln in lines)):
        inside, host, size = (int(x) for x in line)
        parts.append(f"{inside} -> {host}" if size == 1 else f"{inside}-{inside + size - 1} -> {host}-{host + size - 1}")
    return ", ".join(parts)


def facts() -> dict[str, str]:
    """What `info` shows, entering the rootless user namespace first when pybuild would."""
    from runtime import cgroups, overlay, rootless_net, userns
    from runtime.errors import NamespaceError

    out: dict[str, str] = {}
    rootless = userns.rootless_requested() or userns.in_user_namespace()
    out["rootless"] = "yes" if rootless else "no"
    if rootless and not userns.in_user_namespace():
        from builder.util.paths import user_root

        os.environ.setdefault("PYBUILD_ROOT", str(user_root()))
        try:
            plan = userns.enter(os.environ.get("PYBUILD_USERNS") or "auto")
            out["user namespace"] = plan.mode
        except NamespaceError as exc:
            out["user namespace"] = f"unavailable: {exc.message}"
            return out
    out["uid map"] = _maps("uid")
    out["gid map"] = _maps("gid")
    from builder.util.paths import default_root
    from runtime.executor import _default_run_dir

    out["store"] = str(default_root())
    out["run dir"] = str(_default_run_dir())
    out["overlay"] = overlay.driver() + (" (userxattr)" if userns.in_user_namespace() else "")
    if userns.in_user_namespace():
        tool = rootless_net.tool()
        out["network"] = f"slirp4netns ({tool}) for bridge; none, host" if tool else "none, host (no slirp4netns)"
        delegated = userns.delegated_cgroup(cgroups.CGROUP_ROOT)
        out["cgroups"] = f"v2 delegated at {delegated}" if delegated else \
            "none (no cgroup v2 delegation: limits refused)"
    else:
        out["network"] = "bridge (pybuild0), none, host"
        version = cgroups.version(cgroups.CGROUP_ROOT)
        out["cgroups"] = {0: "none", 1: "v1 (hybrid)", 2: "v2"}[version]
    return out


def run(args: argparse.Namespace) -> int:
    info = facts()
    if args.format == "json":
        import json

        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0
