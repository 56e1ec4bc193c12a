"""The OCI / Docker image model: digests, descriptors, manifests, indexes and image configs.

Every type is a frozen dataclass that converts to and from the JSON documents of the
OCI image spec (and Docker's v2 schema 2, which uses the same shapes with other media types).
`to_json()` gives canonical bytes (sorted keys, no spaces), so the same value always has
the same digest. Parsing keeps fields we do not model in `extra`, so nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Mapping

from builder.errors import ImageFormatError
from builder.util import sha

__all__ = [
    "Digest", "Descriptor", "Platform", "Manifest", "Index", "ImageConfig", "ContainerConfig",
    "Healthcheck", "History", "canonical_json", "loads_json", "MAX_JSON_BYTES", "chain_ids", "OCI_MANIFEST", "OCI_INDEX", "OCI_CONFIG",
    "OCI_LAYER", "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD", "OCI_EMPTY_JSON", "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST",
    "DOCKER_CONFIG", "DOCKER_LAYER", "DOCKER_FOREIGN_LAYER", "MANIFEST_TYPES", "INDEX_TYPES", "LAYER_TYPES",
]

# Media types: OCI image spec v1.1 and Docker image manifest v2 schema 2.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY_JSON = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
LAYER_TYPES = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_FOREIGN_LAYER})

_DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


class Digest(str):
    """A validated content digest, `sha256:<64 hex>` (sha512 is accepted when reading)."""

    __slots__ = ()

    def __new__(cls, value: str) -> "Digest":
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str) or not _DIGEST_RE.match(value):
            raise ImageFormatError(f"invalid digest {value!r}", hint="expected sha256:<64 lowercase hex digits>")
        return super().__new__(cls, value)

    @classmethod
    def of(cls, data: bytes) -> "Digest":
        """The sha256 digest of some bytes."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hex(cls, hex_: str) -> "Digest":
        return cls("sha256:" + hex_)

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def hex(self) -> str:
        return self.split(":", 1)[1]

    @property
    def short(self) -> str:
        """The first 12 hex digits, as `docker images` shows an image id."""
        return self.hex[:12]


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no insignificant whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


MAX_JSON_BYTES = 32 << 20  # a manifest, index or config larger than this is refused, not parsed


def loads_json(data: bytes | str, what: str) -> Any:
    """JSON of a manifest, index, config or archive metadata, bounded: too large or nested deeper
    than Python's recursion limit (`[` * 200000) is an ImageFormatError naming `what`."""
    if len(data) > MAX_JSON_BYTES:
        raise ImageFormatError(f"{what}: {len(data)} bytes of JSON, more than the {MAX_JSON_BYTES >> 20} MiB allowed")
    try:
        return json.loads(data)
    except RecursionError:
        raise ImageFormatError(f"{what}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageFormatError(f"{what}: not valid JSON: {exc}") from None


def _loads(data: bytes | str, what: str) -> dict[str, Any]:
    obj = loads_json(data, what)
    if not isinstance(obj, dict):
        raise ImageFormatError(f"{what}: expected a JSON object")
    return obj


def _media_type(d: Mapping[str, Any], what: str, default: str) -> str:
    """The document's `mediaType` (a string), or `default` when absent."""
    mt = d.get("mediaType") or default
    if not isinstance(mt, str):
        raise ImageFormatError(f"{what}: mediaType must be a string, got {mt!r}")
    return mt


def _annotations(d: Mapping[str, Any], what: str) -> dict[str, str] | None:
    """The document's `annotations` (an object of strings), or None when absent."""
    a = d.get("annotations")
    if not a:
        return None
    if not isinstance(a, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in a.items()):
        raise ImageFormatError(f"{what}: annotations must be an object of strings")
    return a


def chain_ids(diff_ids: Iterable[str]) -> list[Digest]:
    """OCI ChainIDs: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n])."""
    return [Digest(c) for c in sha.chain_ids(diff_ids)]


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair (with optional variant), as in an index or a config."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None
    os_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Platform":
        return cls(os=str(d.get("os", "linux")), architecture=str(d.get("architecture", "amd64")),
                   variant=d.get("variant"), os_version=d.get("os.version"))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob: media type, digest, size (and optional annotations/platform)."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = self.platform.to_dict()
        if self.urls:
            d["urls"] = list(self.urls)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Descriptor":
        if not isinstance(d, Mapping):
            raise ImageFormatError(f"malformed descriptor {d!r}: not a JSON object")
        try:
            size = d["size"]
            if not isinstance(size, int) or size < 0:
                raise ImageFormatError(f"descriptor size must be a non-negative integer, got {size!r}")
            return cls(media_type=_media_type(d, "descriptor", ""), digest=Digest(d["digest"]), size=size,
                       annotations=dict(d["annotations"]) if d.get("annotations") else None,
                       platform=Platform.from_dict(d["platform"]) if d.get("platform") else None,
                       urls=tuple(d.get("urls") or ()))
        except (KeyError, TypeError) as exc:
            raise ImageFormatError(f"malformed descriptor {dict(d)!r}: missing {exc}") from None


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker v2 schema 2): a config and ordered layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST
    annotations: Mapping[str, str] | None = None
    subject: Descriptor | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                             "config": self.config.to_dict(), "layers": [l.to_dict() for l in self.layers]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.subject:
            d["subject"] = self.subject.to_dict()
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> "Manifest":
        d = _loads(data, "manifest")
        if d.get("schemaVersion") != 2:
            raise ImageFormatError(f"manifest: unsupported schemaVersion {d.get('schemaVersion')!r}")
        mt = _media_type(d, "manifest", OCI_MANIFEST)
        if mt not in MANIFEST_TYPES:
            raise ImageFormatError(f"manifest: unsupported media type {mt!r}")
        if not isinstance(d.get("config"), dict) or not isinstance(d.get("layers", []), list):
            raise ImageFormatError("manifest: missing config or layers")
        return cls(config=Descriptor.from_dict(d["config"]),
                   layers=tuple(Descriptor.from_dict(l) for l in d.get("layers", [])), media_type=mt,
                   annotations=_annotations(d, "manifest"),
                   subject=Descriptor.from_dict(d["subject"]) if d.get("subject") else None)


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): manifests, usually one per platform."""

    manifests: tuple[Descriptor, ...]
    media_type: str = OCI_INDEX
    annotations: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                             "manifests": [m.to_dict() for m in self.manifests]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> "Index":
        d = _loads(data, "index")
        if d.get("schemaVersion") != 2 or not isinstance(d.get("manifests"), list):
            raise ImageFormatError("index: expected schemaVersion 2 and a manifests list")
        return cls(manifests=tuple(Descriptor.from_dict(m) for m in d["manifests"]),
                   media_type=_media_type(d, "index", OCI_INDEX), annotations=_annotations(d, "index"))


@dataclass(frozen=True)
class Healthcheck:
    """HEALTHCHECK: test argv (["NONE"] disables) and durations in nanoseconds (0 = default)."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    _KEYS = (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
             ("start_interval", "StartInterval"), ("retries", "Retries"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"Test": list(self.test)}
        for attr, key in self._KEYS:
            if getattr(self, attr):
                d[key] = getattr(self, attr)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Healthcheck":
        return cls(test=tuple(d.get("Test") or ()), **{a: int(d.get(k) or 0) for a, k in cls._KEYS})


# ContainerConfig attribute -> JSON key; the order is the order Docker prints them in.
_CC_KEYS = (
    ("user", "User"), ("exposed_ports", "ExposedPorts"), ("env", "Env"), ("entrypoint", "Entrypoint"),
    ("cmd", "Cmd"), ("volumes", "Volumes"), ("working_dir", "WorkingDir"), ("labels", "Labels"),
    ("stop_signal", "StopSignal"), ("args_escaped", "ArgsEscaped"), ("healthcheck", "Healthcheck"),
    ("on_build", "OnBuild"), ("shell", "Shell"),
)


@dataclass(frozen=True)
class ContainerConfig:
    """The `config` part of an image config: how to run the image.

    Lists are tuples; `None` means "not set" (so `Cmd: null` differs from `Cmd: []`).
    Healthcheck, OnBuild and Shell are Docker extensions; we keep them in OCI configs too.
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for attr, key in _CC_KEYS:
            v = getattr(self, attr)
            if attr in ("entrypoint", "cmd"):
                if v is not None:
                    d[key] = list(v)
            elif attr in ("exposed_ports", "volumes"):
                if v:
                    d[key] = {p: {} for p in v}
            elif attr == "healthcheck":
                if v is not None:
                    d[key] = v.to_dict()
            elif isinstance(v, tuple):
                if v:
                    d[key] = list(v)
            elif attr == "labels":
                if v:
                    d[key] = dict(v)
            elif v:
                d[key] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ContainerConfig":
        d = d or {}

        def seq(key: str) -> tuple[str, ...]:
            v = d.get(key)
            if v is None:
                return ()
            if isinstance(v, str):  # some old images store Cmd as a string
                return (v,)
            return tuple(str(x) for x in v)

        return cls(
            user=d.get("User") or "", exposed_ports=tuple(sorted(d.get("ExposedPorts") or {})),
            env=seq("Env"), entrypoint=seq("Entrypoint") if d.get("Entrypoint") is not None else None,
            cmd=seq("Cmd") if d.get("Cmd") is not None else None, volumes=tuple(sorted(d.get("Volumes") or {})),
            working_dir=d.get("WorkingDir") or "", labels=dict(d.get("Labels") or {}),
            stop_signal=d.get("StopSignal") or "", args_escaped=bool(d.get("ArgsEscaped")),
            healthcheck=Healthcheck.from_dict(d["Healthcheck"]) if d.get("Healthcheck") else None,
            on_build=seq("OnBuild"), shell=seq("Shell"),
        )

    def env_dict(self) -> dict[str, str]:
        """Env as a mapping (later entries win)."""
        return {k: v for k, _, v in (e.partition("=") for e in self.env)}


@dataclass(frozen=True)
class History:
    """One history entry: the instruction that made a layer (or an empty layer)."""

    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.created:
            d["created"] = self.created
        if self.created_by:
            d["created_by"] = self.created_by
        if self.author:
            d["author"] = self.author
        if self.comment:
            d["comment"] = self.comment
        if self.empty_layer:
            d["empty_layer"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "History":
        return cls(created=d.get("created"), created_by=d.get("created_by") or "", author=d.get("author") or "",
                   comment=d.get("comment") or "", empty_layer=bool(d.get("empty_layer")))


_IC_KNOWN = {"architecture", "os", "variant", "os.version", "created", "author", "config", "rootfs", "history"}


@dataclass(frozen=True)
class ImageConfig:
    """An image config (OCI `application/vnd.oci.image.config.v1+json`, same shape as Docker's).

    The image id is the digest of `to_json()`; `extra` keeps unmodelled top-level fields
    (e.g. Docker's `container_config`) so a round trip does not drop them.
    """

    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    created: str | None = None
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d.update({"architecture": self.architecture, "os": self.os, "config": self.config.to_dict(),
                  "rootfs": {"type": "layers", "diff_ids": [str(x) for x in self.diff_ids]}})
        if self.variant:
            d["variant"] = self.variant
        if self.created:
            d["created"] = self.created
        if self.author:
            d["author"] = self.author
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def digest(self) -> Digest:
        return Digest.of(self.to_json())

    @classmethod
    def from_json(cls, data: bytes | str) -> "ImageConfig":
        d = _loads(data, "image config")
        rootfs = d.get("rootfs") or {}
        if not isinstance(rootfs, dict) or rootfs.get("type", "layers") != "layers":
            raise ImageFormatError("image config: rootfs.type must be 'layers'")
        try:
            return cls(
                architecture=d.get("architecture") or "amd64", os=d.get("os") or "linux",
                variant=d.get("variant"), created=d.get("created"), author=d.get("author") or "",
                config=ContainerConfig.from_dict(d.get("config")),
                diff_ids=tuple(Digest(x) for x in rootfs.get("diff_ids") or ()),
                history=tuple(History.from_dict(h) for h in d.get("history") or ()),
                extra={k: v for k, v in d.items() if k not in _IC_KNOWN},
            )
        except (TypeError, AttributeError, ValueError) as exc:
            raise ImageFormatError(f"image config: malformed: {exc}") from None

    def with_container_config(self, **changes: Any) -> "ImageConfig":
        """A copy with some `config` fields changed (e.g. `cmd=("sh",)`)."""
        return replace(self, config=replace(self.config, **changes))


def _check_field_names() -> None:  # keep _CC_KEYS and the dataclass in step
    assert [a for a, _ in _CC_KEYS] == [f.name for f in fields(ContainerConfig)]


_check_field_names()
