"""What the runtime is asked to run: plain data, no behaviour. Knows nothing of Dockerfiles.

Immutable named tuples (`x._replace(...)` makes a changed copy): `pybuild run` pays for every
import, and the dataclasses module (with `inspect`) costs more than setting up the container.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import NamedTuple


class NetworkMode(enum.Enum):
    NONE = "none"      # loopback only
    HOST = "host"      # the host's network namespace
    BRIDGE = "bridge"  # pybuild0 bridge, veth pair, NAT (default for `pybuild run`)
    DEFAULT = "default"  # what docker build gives a RUN: its own namespace on the bridge, outbound NAT


ALL_CAPABILITIES = frozenset(range(64))  # every capability (the executor keeps those it holds itself)


class ProcessSpec(NamedTuple):
    """One process: argv, environment, user, working directory, terminal and stdin.

    `capabilities` are the capability numbers it keeps (None: Docker's default set).
    `privileged` leaves /proc unmasked and /sys writable, as `docker run --privileged` and
    BuildKit's `RUN --security=insecure` do (give it `ALL_CAPABILITIES` too). `sandbox`: a
    BuildKit RUN: its /etc/hosts (`127.0.0.1 localhost HOSTNAME` and `::1`), the image's own
    /etc/hostname and no HOSTNAME variable.
    `seccomp`: "" for Docker's default profile, "unconfined" for none, else a profile's JSON text.
    `extra_hosts`: (name, ip) lines appended to /etc/hosts (`--add-host`); `shm_size`: bytes of the
    /dev/shm tmpfs (0: Docker's 64 MiB).
    `nice`: added to the caller's niceness for the whole container, its setup included (OCI's
    `process.scheduler.nice`, relative here): set before the first process exists, so no process of
    it ever runs at the caller's priority.
    """

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    user: str = ""  # "", "name", "uid", "name:group", "uid:gid" - resolved in the rootfs
    cwd: str = "/"
    tty: bool = False
    stdin: bool = False
    hostname: str = ""
    capabilities: frozenset[int] | None = None
    privileged: bool = False
    sandbox: bool = False
    seccomp: str = ""
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int = 0
    nice: int = 0


class RootfsSpec(NamedTuple):
    """An overlay root: read-only lower snapshot dirs (lowest first) and a fresh upper dir.

    With no lower dirs and `upper` only, the upper dir itself is the root (FROM scratch).
    """

    lower: tuple[Path, ...]
    upper: Path
    work: Path  # overlayfs workdir, on the same filesystem as upper
    readonly: bool = False
    scaffold: Path | None = None  # where the scaffold lower dir is made, left for the caller (default: removed)


class Mount(NamedTuple):
    """An extra mount inside the container (bind, tmpfs, ...)."""

    target: str
    source: str = ""
    type: str = "bind"  # bind | tmpfs | volume (a bind of an empty `source` first filled with the image's `target`)
    readonly: bool = False
    options: tuple[str, ...] = ()


class PortMapping(NamedTuple):
    """`-p [IP:]HOST:CONTAINER[/proto]`."""

    host_port: int
    container_port: int
    host_ip: str = "0.0.0.0"
    protocol: str = "tcp"


class Limits(NamedTuple):
    """cgroup limits; None means unlimited."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


class ExitStatus(NamedTuple):
    """How the process ended: its exit code (128+N for a signal death) and resource peaks."""

    code: int
    signal: int | None = None
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0
    wall_seconds: float = 0.0
    ports: tuple[PortMapping, ...] = ()
