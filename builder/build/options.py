"""A build's typed options and result, and the parsers that check option text before any step runs.

`BuildOptions` is what `builder.build.build()` takes: the CLI (`commands/build.py`) parses its flags
into one, and any other caller (a server, a test, another tool) builds one directly. Small immutable
slotted classes, not dataclasses nor named tuples: `dataclasses` imports `inspect` (~7 ms) and each
`namedtuple` compiles code (~0.5 ms), and the cached no-op rebuild imports this module.
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.errors import BuildError, StepError

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Mapping

__all__ = ["BuildOptions", "BuildResult", "Output", "ENTITLEMENTS", "OUTPUT_TYPES", "parse_build_args",
           "parse_secrets", "parse_allow", "parse_add_hosts", "parse_shm_size", "parse_outputs", "parse_labels", "parse_platforms", "validate",
           "check_entitlements", "output_compression"]

ENTITLEMENTS = ("security.insecure", "network.host")
OUTPUT_TYPES = ("image", "oci", "docker", "local", "tar", "registry")


class _Frozen:
    """Fields set once by `__init__` (listed in `__slots__`), compared by value, never changed."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # holds dicts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class Output(_Frozen):
    """One `--output`: `type` and its attributes (`dest`, `name`, `compression`, ...) as given."""

    __slots__ = ("type", "attrs")
    type: str
    attrs: Mapping[str, str]

    def __init__(self, type: str, attrs: Mapping[str, str] | None = None) -> None:
        self._set(type=type, attrs=dict(attrs or {}))

    def get(self, key: str, default: str = "") -> str:
        return self.attrs.get(key, default)


class BuildOptions(_Frozen):
    """Everything a build depends on besides the store: the flags of `docker buildx build`.

    `secrets` hold values (never shown: `repr` names their ids only); `ssh` holds `--ssh` specs,
    opened as agents for the build's duration; `cache_from`/`cache_to` hold
    `builder.cache.export.CacheSpec`s; `stdin` is the context or Dockerfile when `context` is "-";
    `extra_hosts` ((name, ip), `--add-host`) go into RUN steps' /etc/hosts, `shm_size` (bytes, 0: 64 MiB)
    is their /dev/shm (both part of a RUN's cache key when set, as in BuildKit's ExecOp).
    `frozen_context`: nobody ever changes the context directory's files (`pybuild serve`'s unpacked
    contexts), so COPY hard-links them into its layer instead of copying their bytes.
    """

    __slots__ = ("context", "dockerfile", "tags", "build_args", "target", "platform", "labels", "no_cache",
                 "no_cache_filter", "pull", "network", "jobs", "secrets", "ssh", "outputs", "cache_from", "cache_to",
                 "allow", "stdin", "extra_hosts", "shm_size", "frozen_context")
    context: str
    dockerfile: str | None
    tags: tuple[str, ...]
    build_args: Mapping[str, str]
    target: str | None
    platform: str | None
    labels: Mapping[str, str]
    no_cache: bool
    no_cache_filter: frozenset[str]
    pull: bool
    network: str
    jobs: int
    secrets: Mapping[str, bytes]
    ssh: tuple[str, ...]
    outputs: tuple[Output, ...]
    cache_from: tuple[Any, ...]
    cache_to: tuple[Any, ...]
    allow: frozenset[str]
    stdin: BinaryIO | None
    extra_hosts: tuple[tuple[str, str], ...]
    shm_size: int
    frozen_context: bool

    def __init__(self, context: str, *, dockerfile: str | None = None, tags: tuple[str, ...] = (),
                 build_args: Mapping[str, str] | None = None, target: str | None = None,
                 platform: str | None = None, labels: Mapping[str, str] | None = None, no_cache: bool = False,
                 no_cache_filter: frozenset[str] = frozenset(), pull: bool = False, network: str = "default",
                 jobs: int = 0, secrets: Mapping[str, bytes] | None = None, ssh: tuple[str, ...] = (),
                 outputs: tuple[Output, ...] | None = None, cache_from: tuple[Any, ...] = (),
                 cache_to: tuple[Any, ...] = (), allow: frozenset[str] = frozenset(),
                 stdin: BinaryIO | None = None, extra_hosts: tuple[tuple[str, str], ...] = (),
                 shm_size: int = 0, frozen_context: bool = False) -> None:
        self._set(context=context, dockerfile=dockerfile, tags=tuple(tags), build_args=dict(build_args or {}),
                  target=target, platform=platform, labels=dict(labels or {}), no_cache=no_cache,
                  no_cache_filter=frozenset(no_cache_filter), pull=pull, network=network, jobs=jobs,
                  secrets=dict(secrets or {}), ssh=tuple(ssh),
                  outputs=tuple(outputs) if outputs is not None else (Output("image"),),
                  cache_from=tuple(cache_from), cache_to=tuple(cache_to), allow=frozenset(allow), stdin=stdin,
                  extra_hosts=tuple((str(n), str(ip)) for n, ip in extra_hosts), shm_size=int(shm_size),
                  frozen_context=bool(frozen_context))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n != "secrets")
        return f"BuildOptions({shown}, secrets={sorted(self.secrets)!r})"


class BuildResult(_Frozen):
    """What a finished build made: the image id (config digest), the manifest digest of the image as
    written (the pushed manifest's with a registry output), the build record's id, and the build
    checks' warnings (buildx prints them after the build)."""

    __slots__ = ("image_id", "manifest_digest", "build_id", "checks", "replay")
    image_id: str
    manifest_digest: str
    build_id: str
    checks: tuple[str, ...]  # the build checks' warnings, one line each (`Rule: message (line N)`)
    replay: dict[str, Any] | None  # what a replay of this no-op from its command line needs (cache/memo.py)

    def __init__(self, image_id: str, manifest_digest: str, build_id: str, checks: tuple[str, ...] = (),
                 replay: dict[str, Any] | None = None) -> None:
        self._set(image_id=image_id, manifest_digest=manifest_digest, build_id=build_id, checks=tuple(checks),
                  replay=replay)


def parse_build_args(values: list[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`KEY=VALUE`, or `KEY` alone taking the value from the environment (dropped when unset)."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key or any(c.isspace() for c in key):  # any other name an ARG can declare (`ARG my-arg`)
            raise BuildError(f"invalid --build-arg {item!r}: the name must be non-empty, without blanks",
                             hint="use --build-arg NAME=VALUE, or --build-arg NAME to take NAME from the environment")
        if eq:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def parse_labels(values: list[str]) -> dict[str, str]:
    """`--label KEY=VALUE` (a bare KEY is an empty value, as docker build)."""
    return {k: v for k, _, v in (x.partition("=") for x in values)}


def _kv_list(spec: str, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in spec.split(","):
        k, eq, v = part.partition("=")
        if not eq or not k:
            raise BuildError(f"invalid {flag} {spec!r}: expected KEY=VALUE pairs separated by commas")
        out[k.strip()] = v
    return out


def parse_secrets(values: list[str]) -> dict[str, bytes]:
    """`id=ID,src=FILE` or `id=ID,env=VAR` -> {id: value}. Values never reach logs or keys."""
    out: dict[str, bytes] = {}
    for spec in values:
        kv = _kv_list(spec, "--secret")
        sid = kv.get("id")
        src = kv.get("src") or kv.get("source")
        env = kv.get("env")
        if not sid:
            sid = env or (os.path.basename(src) if src else "")
        if not sid:
            raise BuildError(f"invalid --secret {spec!r}: needs id=ID")
        if src:
            try:
                out[sid] = Path(src).read_bytes()
            except OSError as exc:
                raise BuildError(f"--secret id={sid}: cannot read {src}: {exc.strerror}") from None
        else:
            var = env or sid
            if var not in os.environ:
                raise BuildError(f"--secret id={sid}: environment variable {var} is not set")
            out[sid] = os.environ[var].encode()
    return out


def parse_allow(values: list[str]) -> frozenset[str]:
    """`--allow` entitlements (comma-separated or repeated), as buildx names them."""
    out = {v.strip() for value in values for v in value.split(",") if v.strip()}
    for v in sorted(out):
        if v not in ENTITLEMENTS:
            raise BuildError(f"invalid --allow {v!r}: expected {' or '.join(ENTITLEMENTS)}")
    return frozenset(out)


def parse_add_hosts(values: list[str]) -> tuple[tuple[str, str], ...]:
    """`--add-host NAME:IP` (or `NAME=IP`, as docker 25+), repeatable -> ((name, ip), ...), in order.
    The IP is checked (v4 or v6, brackets allowed); `host-gateway` is refused: builds have no gateway."""
    import ipaddress

    out: list[tuple[str, str]] = []
    for item in values:
        name, sep, ip = item.partition("=")
        if not sep:
            name, sep, ip = item.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise BuildError(f"invalid --add-host {item!r}: expected NAME:IP", hint="e.g. --add-host db:10.0.0.5")
        if ip == "host-gateway":
            raise BuildError(f"invalid --add-host {item!r}: host-gateway is not supported by pybuild's builds",
                             hint="give the address itself, e.g. --add-host host.docker.internal:172.17.0.1")
        if ip.startswith("[") and ip.endswith("]"):
            ip = ip[1:-1]
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise BuildError(f"invalid --add-host {item!r}: invalid IP address {ip!r}") from None
        out.append((name, ip))
    return tuple(out)


def parse_shm_size(text: str | None) -> int:
    """`--shm-size` (`64m`, `1g`, `1048576`) -> bytes; 0 when not given (the runtime's 64 MiB)."""
    if not text:
        return 0
    from builder.util.units import parse_bytes

    size = parse_bytes(text) or 0
    if size <= 0:
        raise BuildError(f"invalid --shm-size {text!r}: expected a positive size", hint="e.g. --shm-size 128m")
    return size


def parse_outputs(values: list[str], tags: list[str] | tuple[str, ...], push: bool) -> tuple[Output, ...]:
    """`--output` specs; a bare path means `type=local,dest=PATH`; `-t` implies `type=image`."""
    outs: list[Output] = []
    for spec in values:
        if "=" not in spec.split(",")[0]:
            outs.append(Output("local", {"dest": spec}))
            continue
        kv = _kv_list(spec, "--output")
        kind = kv.pop("type", "")
        if kind not in OUTPUT_TYPES:
            raise BuildError(f"invalid --output {spec!r}: type must be image, oci, docker, local, tar or registry")
        if kind in ("oci", "docker", "local", "tar") and not kv.get("dest"):
            raise BuildError(f"--output type={kind} needs dest=PATH")
        outs.append(Output(kind, kv))
    if push:
        outs.append(Output("registry"))
    if not any(o.type == "image" for o in outs) and (tags or not outs):
        outs.insert(0, Output("image"))
    output_compression(outs)  # conflicting or unknown choices fail before the build
    return tuple(outs)


def output_compression(outputs: list[Output] | tuple[Output, ...]) -> tuple[str | None, int | None]:
    """`compression=gzip|zstd|uncompressed` and `compression-level=N` of the outputs (one choice).

    None when not given: layers are then committed uncompressed (a build's cost is not a gzip of
    every layer, as with buildah) and compressed as gzip when exported or pushed.
    """
    chosen = {o.get("compression") for o in outputs if o.get("compression")}
    if len(chosen) > 1:
        raise BuildError(f"--output: conflicting compression choices {sorted(chosen)}")
    compression = chosen.pop() if chosen else None
    if compression not in (None, "gzip", "zstd", "uncompressed"):
        raise BuildError(f"--output: unknown compression {compression!r} (gzip, zstd or uncompressed)")
    levels = {o.get("compression-level") for o in outputs if o.get("compression-level")}
    try:
        level = int(levels.pop()) if levels else None
    except ValueError:
        raise BuildError("--output: compression-level must be a number") from None
    return compression, level


def parse_platforms(text: str | None) -> tuple[str, ...]:
    """`--platform` as buildx reads it: one `os[/arch[/variant]]` or a comma list of them, each
    checked with `oci.platform.parse` (`oci.platform.parse_list`: normalised; () when not given)."""
    if not text:
        return ()
    from builder.oci.platform import PlatformError, parse_list

    try:
        return tuple(parse_list(text))
    except PlatformError as exc:
        raise BuildError(f"invalid --platform {text!r}: {exc.message}", hint=exc.hint) from None


def validate(options: BuildOptions) -> None:
    """Check what a flag parser could not before the first step runs, as docker build does: image
    names (`-t`, `--output name=`), platforms, output types and their required attributes."""
    from builder.oci.reference import parse_reference

    for tag in options.tags:
        _check_name(tag, "tag", parse_reference)
    for out in options.outputs:
        if out.type not in OUTPUT_TYPES:
            raise BuildError(f"invalid --output type {out.type!r}: expected {', '.join(OUTPUT_TYPES)}")
        for name in filter(None, out.get("name").split(",")):
            _check_name(name, "--output name", parse_reference)
    if any(o.type == "registry" for o in options.outputs) and not options.tags and not any(
            o.get("name") for o in options.outputs if o.type == "registry"):
        raise BuildError("--push needs a name: -t REGISTRY/NAME:TAG or --output type=registry,name=...")
    parse_platforms(options.platform)


def _check_name(name: str, what: str, parse_reference: Any) -> None:
    from builder.errors import InvalidReferenceError

    if "@" in name:
        raise InvalidReferenceError(f'invalid {what} "{name}": an image name cannot contain a digest',
                                    hint="use NAME[:TAG], e.g. myapp:1.0")
    try:
        parse_reference(name)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f'invalid {what} "{name}": {exc.message}', hint=exc.hint) from None


def check_entitlements(graph: Any, allow: frozenset[str]) -> None:
    """Refuse a build whose steps need an entitlement that `--allow` did not grant (cached or not):
    `RUN --security=insecure` needs security.insecure, `RUN --network=host` network.host (as buildx)."""
    from builder.build.graph import Exec

    for idx in sorted(graph.stages):
        for node in graph.stages[idx].nodes:
            op, o = node.op, node.origin
            if not isinstance(op, Exec):
                continue
            needs = [("--security=insecure", "security.insecure")] if op.security == "insecure" else []
            needs += [("--network=host", "network.host")] if op.network == "host" else []
            for flag, entitlement in needs:
                if entitlement not in allow:
                    raise StepError(f"RUN {flag} needs the {entitlement} entitlement", filename=o.filename,
                                    line=o.line, column=o.column, source_line=o.text,
                                    hint=f"pass --allow {entitlement} to grant it")
