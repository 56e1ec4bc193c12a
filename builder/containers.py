"""From a stored image to a container: the image config (ENTRYPOINT, CMD, ENV, USER, WORKDIR)
merged with `pybuild run` overrides as Docker merges them, and the image's snapshot dirs as the
container's lower dirs. The runtime never sees the store; the store never sees the runtime."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from builder.errors import BuildError
from runtime.containers import Container, Containers
from runtime.spec import Limits, Mount, NetworkMode, PortMapping, ProcessSpec

_SIZE = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class RunOptionError(BuildError):
    exit_code = 125


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The `pybuild run` flags that shape the container."""

    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    env: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    user: str | None = None
    workdir: str | None = None
    tty: bool = False
    interactive: bool = False
    hostname: str = ""
    volumes: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    network: str = "bridge"
    memory: str | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    name: str = ""
    auto_remove: bool = False
    read_only: bool = False


def containers(store_root: Path | None = None) -> Containers:
    """The containers of the store at `store_root` (default: the store's default root)."""
    if store_root is None:
        from builder.store import default_root

        store_root = default_root()
    return Containers(store_root / "containers")


def parse_size(text: str) -> int:
    """`512m`, `1g`, `100k`, `1048576` -> bytes (Docker's --memory)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise RunOptionError(f"invalid size {text!r}", hint="use a number with an optional unit: 512m, 1g")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_publish(spec: str) -> PortMapping:
    """`[IP:]HOST:CONTAINER[/tcp|udp]`."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    parts = body.rsplit(":", 2)
    try:
        if len(parts) == 3:
            return _port(int(parts[1]), int(parts[2]), parts[0] or "0.0.0.0", proto)
        if len(parts) == 2:
            return _port(int(parts[0]), int(parts[1]), "0.0.0.0", proto)
    except ValueError:
        pass
    raise RunOptionError(f"invalid port mapping {spec!r}", hint="use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]")


def _port(host: int, ctr: int, ip: str, proto: str) -> PortMapping:
    if proto not in ("tcp", "udp") or not (0 < host < 65536 and 0 < ctr < 65536):
        raise ValueError(proto)
    return PortMapping(host, ctr, ip, proto)


def parse_volume(spec: str) -> Mount:
    """`HOST:CONTAINER[:ro|rw]` (a bind mount; the host directory is created when missing)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0].startswith(("/", ".")) or not parts[1].startswith("/") or (
            len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise RunOptionError(f"invalid volume {spec!r}",
                             hint="use -v /host/path:/container/path[:ro] (named volumes are not supported)")
    source = os.path.abspath(parts[0])
    if not os.path.exists(source):
        os.makedirs(source)
    return Mount(parts[1], source, "bind", len(parts) == 3 and parts[2] == "ro")


def _env_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise RunOptionError(f"cannot read env file {path}: {exc.strerror}") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if "=" in line else f"{line}={os.environ.get(line, '')}")
    return out


def process_spec(config: object, opts: RunOptions, hostname: str = "") -> ProcessSpec:
    """Docker's merge of image config and run flags into the process to start."""
    cc = config  # builder.oci.model.ContainerConfig
    if opts.entrypoint is not None:
        entrypoint: tuple[str, ...] = (opts.entrypoint,) if opts.entrypoint else ()
        cmd = opts.command
    else:
        entrypoint = tuple(cc.entrypoint or ())  # type: ignore[attr-defined]
        cmd = opts.command or tuple(cc.cmd or ())  # type: ignore[attr-defined]
    argv = entrypoint + cmd
    if not argv:
        raise RunOptionError("no command specified", hint="the image has no CMD or ENTRYPOINT: give a command")
    env: dict[str, str] = {}
    for item in (*cc.env, *(e for f in opts.env_files for e in _env_file(f)), *opts.env):  # type: ignore[attr-defined]
        key, sep, value = item.partition("=")
        env[key] = value if sep else os.environ.get(key, "")
    return ProcessSpec(argv=argv, env=tuple(env.items()), user=opts.user if opts.user is not None else cc.user,  # type: ignore[attr-defined]
                       cwd=opts.workdir or cc.working_dir or "/", tty=opts.tty, stdin=opts.interactive,  # type: ignore[attr-defined]
                       hostname=opts.hostname or hostname)


def create(store: object, image_ref: str, opts: RunOptions) -> Container:
    """Resolve the image, unpack its snapshots and record a new container for it."""
    image = store.resolve(image_ref)  # type: ignore[attr-defined]
    config = image.config()  # ImageConfig
    try:
        network = NetworkMode(opts.network)
    except ValueError:
        raise RunOptionError(f"unknown network {opts.network!r}", hint="use none, host or bridge") from None
    if network == NetworkMode.DEFAULT:
        raise RunOptionError("unknown network 'default'", hint="use none, host or bridge")
    ports = tuple(parse_publish(p) for p in opts.publish)
    if ports and network != NetworkMode.BRIDGE:
        raise RunOptionError("publishing ports needs --network bridge")
    limits = Limits(parse_size(opts.memory) if opts.memory else None, opts.cpus, opts.pids_limit)
    mounts = tuple(parse_volume(v) for v in opts.volumes)
    process = process_spec(config.config, opts)
    lower: Sequence[Path] = store.rootfs_dirs(image)  # type: ignore[attr-defined]
    return containers(store.root).create(  # type: ignore[attr-defined]
        str(image.id), image_ref, process, list(lower), name=opts.name, mounts=mounts, network=network, limits=limits,
        ports=ports, auto_remove=opts.auto_remove, read_only=opts.read_only,
        stop_signal=_stop_signal(config.config.stop_signal))


def _stop_signal(name: str) -> int:
    """An image's STOPSIGNAL (`SIGQUIT`, `QUIT`, `3`) as a number; SIGTERM when unset."""
    import signal

    text = name.strip().upper()
    if not text:
        return int(signal.SIGTERM)
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise RunOptionError(f"the image's STOPSIGNAL {name!r} is not a signal") from None

