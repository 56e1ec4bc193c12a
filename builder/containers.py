"""From a stored image to a container: the image config (ENTRYPOINT, CMD, ENV, USER, WORKDIR,
VOLUME, STOPSIGNAL) merged with `pybuild run` overrides as Docker merges them, and the image's
snapshot dirs as the container's lower dirs. The runtime never sees the store; the store never
sees the runtime.

`pybuild run` has ~150 ms for everything, so a tagged image whose layers are already unpacked is
found with `builder.store.lookup` (the store's light reader of `images.json`, the config blob and
`snapshots/<chain id>`), without importing the rest of the store and its OCI model; anything else
goes through `Store`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

from builder.errors import BuildError
from builder.util.units import parse_bytes
from runtime.containers import Container, Containers
from runtime.spec import Limits, Mount, NetworkMode, PortMapping, ProcessSpec

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Docker's container names
MIN_MEMORY = 6 << 20  # Docker's smallest --memory


class RunOptionError(BuildError):
    exit_code = 125


class RunOptions(NamedTuple):
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
    platform: str | None = None  # of a multi-platform image, this platform's (default: this machine's)
    security_opt: tuple[str, ...] = ()
    add_hosts: tuple[str, ...] = ()  # NAME:IP lines for /etc/hosts; IP `host-gateway` is the bridge's gateway
    shm_size: str | None = None  # /dev/shm's size (default 64m)
    no_healthcheck: bool = False
    health: tuple[tuple[str, str], ...] = ()  # (flag, value): --health-cmd, --health-interval, ...


def containers(store_root: Path | None = None) -> Containers:
    """The containers of the store at `store_root` (default: the store's default root)."""
    if store_root is None:
        from builder.util.paths import default_root

        store_root = default_root()
    return Containers(store_root / "containers")


def parse_size(text: str) -> int:
    """`512m`, `1g`, `100k`, `1048576` -> bytes (Docker's --memory)."""
    size = parse_bytes(text)
    if size is None:
        raise RunOptionError(f"invalid size {text!r}", hint="use a number with an optional unit: 512m, 1g")
    return size


def parse_limits(opts: RunOptions) -> Limits:
    """`--memory`, `--cpus`, `--pids-limit` with Docker's rules: 0 (and a negative pids limit) means
    no limit, memory is at least 6 MiB, CPUs range from 0.01 to the number this machine has."""
    memory = parse_size(opts.memory) if opts.memory else 0
    if 0 < memory < MIN_MEMORY:
        raise RunOptionError(f"minimum memory limit allowed is 6MB (got {opts.memory})")
    cpus = opts.cpus or 0.0
    ncpu = os.cpu_count() or 1
    if cpus and not 0.01 <= cpus <= ncpu:
        raise RunOptionError(f"range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
    pids = opts.pids_limit if opts.pids_limit and opts.pids_limit > 0 else None
    return Limits(memory or None, cpus or None, pids)


def parse_publish(spec: str) -> PortMapping:
    """`[[IP:][HOST]:]CONTAINER[/tcp|udp]`; no host port is port 0 (`assign_port` picks one)."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    ip, host, ctr = "0.0.0.0", "0", body
    if ":" in body:
        rest, ctr = body.rsplit(":", 1)
        ip, _, host = rest.rpartition(":")
        ip, host = ip or "0.0.0.0", host or "0"
    try:
        return _port(int(host), int(ctr), ip, proto)
    except ValueError:
        raise RunOptionError(f"invalid port mapping {spec!r}",
                             hint="use -p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]") from None


def _port(host: int, ctr: int, ip: str, proto: str) -> PortMapping:
    import ipaddress

    if proto not in ("tcp", "udp") or not (0 <= host < 65536 and 0 < ctr < 65536):
        raise ValueError(proto)
    ipaddress.IPv4Address(ip)  # a ValueError when it is not one
    return PortMapping(host, ctr, ip, proto)


def assign_port(port: PortMapping) -> PortMapping:
    """A mapping without a host port gets a free one on its address, as Docker's port allocator."""
    if port.host_port:
        return port
    import socket

    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((port.host_ip, 0))
            return port._replace(host_port=s.getsockname()[1])
    except OSError as exc:
        raise RunOptionError(f"cannot publish port {port.container_port}/{port.protocol} on {port.host_ip}: "
                             f"{exc.strerror}") from None


def parse_volume(spec: str) -> Mount | str:
    """`HOST:CONTAINER[:ro|rw]`: a bind mount (the host directory is created when missing);
    `/CONTAINER` alone: an anonymous volume at that path (returned as the path)."""
    parts = spec.split(":")
    if len(parts) == 1 and spec.startswith("/"):
        if os.path.normpath(spec) in ("/", "//"):
            raise RunOptionError(f"invalid volume {spec!r}: destination can't be '/'")
        return spec
    if len(parts) not in (2, 3) or not parts[0].startswith(("/", ".")) or not parts[1].startswith("/") or (
            len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise RunOptionError(f"invalid volume {spec!r}",
                             hint="use -v /host/path:/container/path[:ro] or -v /container/path "
                                  "(named volumes are not supported)")
    if os.path.normpath(parts[1]) in ("/", "//"):
        raise RunOptionError(f"invalid volume {spec!r}: destination can't be '/'",
                             hint="mount the host directory below the container's root, e.g. /host")
    source = os.path.abspath(parts[0])
    if not os.path.exists(source):
        os.makedirs(source)
    return Mount(parts[1], source, "bind", len(parts) == 3 and parts[2] == "ro")


def _env_file(path: str) -> list[str]:
    """Docker's env file: `KEY=VALUE` lines (the value verbatim), `KEY` alone takes our value (and
    is dropped when we have none), `#` comments and blank lines skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise RunOptionError(f"cannot read env file {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise RunOptionError(f"{path}:{n}: invalid environment variable {line!r}",
                                 hint="use KEY=VALUE, or KEY alone to pass our value on")
        out.append(line)
    return out


def _environment(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` items, later ones winning; `KEY` alone takes our value, or is left out when we
    have none (as `docker run -e KEY`)."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise RunOptionError(f"invalid environment variable: {item}", hint="use -e KEY=VALUE or -e KEY")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def process_spec(config: dict, opts: RunOptions, hostname: str = "") -> ProcessSpec:
    """Docker's merge of an image's config (the `config` object of its OCI config JSON) and the
    run flags into the process to start."""
    if opts.entrypoint is not None:
        entrypoint: tuple[str, ...] = (opts.entrypoint,) if opts.entrypoint else ()
        cmd = opts.command
    else:
        entrypoint = tuple(config.get("Entrypoint") or ())
        cmd = opts.command or tuple(config.get("Cmd") or ())
    argv = entrypoint + cmd
    if not argv:
        raise RunOptionError("no command specified", hint="the image has no CMD or ENTRYPOINT: give a command")
    image_env = (item.partition("=") for item in config.get("Env") or ())
    env = {**{key: value for key, _, value in image_env},
           **_environment([e for f in opts.env_files for e in _env_file(f)] + list(opts.env))}
    return ProcessSpec(argv=argv, env=tuple(env.items()),
                       user=opts.user if opts.user is not None else config.get("User") or "",
                       cwd=opts.workdir or config.get("WorkingDir") or "/", tty=opts.tty, stdin=opts.interactive,
                       hostname=opts.hostname or hostname, seccomp=_seccomp(opts.security_opt),
                       extra_hosts=_extra_hosts(opts.add_hosts), shm_size=_shm_size(opts.shm_size))


def _extra_hosts(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`--add-host` as the build parses it; `host-gateway` is the bridge's gateway (the host), as
    dockerd's default host-gateway-ip."""
    if not values:
        return ()
    from builder.build.options import parse_add_hosts
    from runtime.network import GATEWAY

    gateway = [v[:-len("host-gateway")] + GATEWAY if v.endswith((":host-gateway", "=host-gateway")) else v
               for v in values]
    try:
        return parse_add_hosts(gateway)
    except BuildError as exc:
        raise RunOptionError(exc.message, hint=exc.hint) from None


def _shm_size(text: str | None) -> int:
    """`--shm-size` in bytes; 0 (not given) is the runtime's 64 MiB."""
    if text is None or text == "":
        return 0
    size = parse_size(text)
    if size <= 0:
        raise RunOptionError(f"invalid --shm-size {text!r}: expected a positive size", hint="e.g. --shm-size 128m")
    return size


def exec_spec(container: Container, command: tuple[str, ...], env: tuple[str, ...] = (), user: str = "",
              workdir: str = "", tty: bool = False, stdin: bool = False, privileged: bool = False) -> ProcessSpec:
    """The process of `docker exec`: the container's own (environment, user, working directory,
    hostname, capabilities, seccomp profile) with the exec's overrides; `privileged` keeps every
    capability and no seccomp filter, as `docker exec --privileged`."""
    if not command or not command[0]:
        raise RunOptionError("No exec command specified")
    if workdir and not workdir.startswith("/"):
        raise RunOptionError(f"the working directory {workdir!r} is invalid, it needs to be an absolute path")
    base = container.config.process
    from runtime.spec import ALL_CAPABILITIES

    return base._replace(argv=tuple(command), env=tuple({**dict(base.env), **_environment(list(env))}.items()),
                         user=user or base.user, cwd=workdir or base.cwd, tty=tty, stdin=stdin,
                         capabilities=ALL_CAPABILITIES if privileged else base.capabilities,
                         seccomp="unconfined" if privileged else base.seccomp)


def _seccomp(security_opt: tuple[str, ...]) -> str:
    """`--security-opt seccomp=unconfined|PROFILE.json` as the runtime takes it ("" is Docker's
    default profile); `no-new-privileges` is accepted (it is always set)."""
    profile = ""
    for opt in security_opt:
        key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")  # docker takes both
        if key == "seccomp" and sep and value:
            from runtime.seccomp import check_profile, read_profile

            if value == "unconfined":
                profile = "unconfined"
            elif value.lstrip().startswith("{"):  # the profile itself, as the Engine API passes it
                profile = check_profile(value, "given inline")
            else:
                profile = read_profile(value)
        elif key == "no-new-privileges" and value in ("", "true"):
            continue
        else:
            raise RunOptionError(f"invalid --security-opt {opt!r}",
                                 hint="use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges")
    return profile


def volume_mounts(config: dict, opts: RunOptions) -> tuple[tuple[Mount, ...], tuple[str, ...]]:
    """The bind mounts of `-v` and the anonymous volumes to create: the image's VOLUMEs and `-v PATH`,
    except where a bind mount covers the same path (as Docker lets `-v` override a VOLUME)."""
    binds: list[Mount] = []
    anonymous: list[str] = []
    for spec in opts.volumes:
        m = parse_volume(spec)
        if isinstance(m, Mount):
            binds.append(m)
        else:
            anonymous.append(m)
    taken = {_clean(m.target) for m in binds}
    volumes: dict[str, None] = {}
    for path in (*(config.get("Volumes") or {}), *anonymous):
        if _clean(path) not in taken and _clean(path) != "/":
            volumes[_clean(path)] = None
    return tuple(binds), tuple(volumes)


def _clean(path: str) -> str:
    return os.path.normpath("/" + path.lstrip("/"))


def stored_image(root: Path, ref: str) -> tuple[str, bytes, list[Path]] | None:
    """(image id, raw config, snapshot dirs lowest first) of an image named by its tag or full id
    whose layers are all unpacked, read from the store's files; None when anything is off the
    fast path (not a plain tag, a snapshot still packed, a config that does not hash to the id)."""
    from builder.store.lookup import find_unpacked

    return find_unpacked(root, ref)


def create(store_root: Path, image_ref: str, opts: RunOptions) -> Container:
    """Resolve the image, unpack its snapshots and record a new container for it."""
    try:
        network = NetworkMode(opts.network)
    except ValueError:
        raise RunOptionError(f"unknown network {opts.network!r}", hint="use none, host or bridge") from None
    if network == NetworkMode.DEFAULT:
        raise RunOptionError("unknown network 'default'", hint="use none, host or bridge")
    ports = tuple(assign_port(parse_publish(p)) for p in opts.publish)
    if ports and network != NetworkMode.BRIDGE:
        raise RunOptionError("publishing ports needs --network bridge")
    limits = parse_limits(opts)
    _extra_hosts(opts.add_hosts), _shm_size(opts.shm_size)  # bad values fail before the image is looked up
    if opts.workdir and not opts.workdir.startswith("/"):
        raise RunOptionError(f"the working directory {opts.workdir!r} is invalid, it needs to be an absolute path")
    if len(opts.hostname.encode()) > 64:  # the kernel's HOST_NAME_MAX
        raise RunOptionError(f"invalid hostname {opts.hostname[:20]!r}...: longer than 64 bytes")
    if opts.name and not _NAME.fullmatch(opts.name):
        raise RunOptionError(f"invalid container name ({opts.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    found = stored_image(store_root, image_ref) if not opts.platform else None
    if found is None:
        from builder.oci.platform import parse
        from builder.store import Store

        store = Store.open(store_root)
        image = store.resolve(image_ref, parse(opts.platform) if opts.platform else None)
        found = (str(image.id), image.raw_config(), store.rootfs_dirs(image))
    image_id, raw_config, lower = found
    doc = json.loads(raw_config)
    if doc.get("architecture") != _HOST_ARCH.get(os.uname().machine, os.uname().machine):
        from builder.build.emulation import check  # an image for another architecture runs emulated, or not at all

        check([f"{doc.get('os') or 'linux'}/{doc.get('architecture')}" + (f"/{doc['variant']}" if doc.get("variant") else "")])
    config = doc.get("config") or {}
    process = process_spec(config, opts)
    binds, volumes = volume_mounts(config, opts)
    return containers(store_root).create(
        image_id, image_ref, process, list(lower), name=opts.name, mounts=binds, volumes=volumes, network=network,
        limits=limits, ports=ports, auto_remove=opts.auto_remove, read_only=opts.read_only,
        stop_signal=_stop_signal(config.get("StopSignal") or ""), healthcheck=_healthcheck(config, opts))


def _healthcheck(config: dict, opts: RunOptions) -> dict | None:
    """The image's HEALTHCHECK with `--health-*` over it, as Docker's Healthcheck, with the command it
    runs under "Argv" (`CMD-SHELL` through the image's SHELL); None without one, or with
    --no-healthcheck."""
    from runtime import durations
    from runtime.health import test_argv

    if opts.no_healthcheck:
        if opts.health:
            raise RunOptionError("--no-healthcheck conflicts with --health-* options")
        return None
    hc = dict(config.get("Healthcheck") or {}) if isinstance(config.get("Healthcheck"), dict) else {}
    keys = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
            "start-interval": "StartInterval", "retries": "Retries"}
    for flag, value in opts.health:
        if flag == "cmd":
            hc["Test"] = ["CMD-SHELL", value]
            continue
        number = (int(value) if value.lstrip("-").isdigit() else None) if flag == "retries" else durations.parse(value)
        if number is None or number < 0:
            what = "integer" if flag == "retries" else "duration"
            raise RunOptionError(f'invalid argument "{value}" for "--health-{flag}" flag: not a valid {what}',
                                 hint="durations are Go's: 500ms, 5s, 1m30s")
        hc[keys[flag]] = number
    argv = test_argv(hc, config.get("Shell"))
    return {**hc, "Argv": argv} if argv else None


_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}  # uname -m -> OCI


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

