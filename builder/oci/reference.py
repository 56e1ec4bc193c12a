"""Image references as Docker reads them: `[registry[:port]/]path[:tag][@digest]`.

The grammar follows the distribution project's reference package:

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [ domain "/" ] path           (at most 255 characters)
    domain      := host [ ":" port ]             host: DNS name, IPv4 or [IPv6]
    path        := component ( "/" component )*  component: [a-z0-9]+ joined by . _ __ or dashes
    tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest      := algorithm ":" hex

Normalisation is Docker's: a first path part counts as a registry only when it contains `.` or
`:`, is `localhost`, or has upper-case letters; otherwise the registry is `docker.io`, and a
one-part path there gets `library/` in front (`tomcat:alpine` is
`docker.io/library/tomcat:alpine`). `index.docker.io` is `docker.io`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from builder.errors import InvalidReferenceError

__all__ = ["DEFAULT_REGISTRY", "DEFAULT_TAG", "Reference", "parse_reference", "validate_tag", "normalize_tag"]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRY = "index.docker.io"
_DOCKER_API_HOST = "registry-1.docker.io"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(rf"({_DOMAIN}/{_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_HEX64_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed, normalised reference; `tag` and `digest` may each be absent."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, e.g. `docker.io/library/tomcat`."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the registry API (`registry-1.docker.io` for Docker Hub)."""
        return _DOCKER_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag (or `latest`)."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=_validate_digest(digest, digest))

    def with_default_tag(self) -> Reference:
        """`latest` when the reference names neither a tag nor a digest (Docker's TagNameOnly)."""
        return self if self.tag or self.digest else replace(self, tag=DEFAULT_TAG)

    def familiar(self) -> str:
        """The short form Docker prints: `tomcat:alpine`, `me/app`, `localhost:5000/x@sha256:...`."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/") if self.repository.count("/") == 1 else self.repository
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> Reference:
    """Parse and normalise `text` the way `docker pull` does, or raise InvalidReferenceError."""
    if not text:
        raise InvalidReferenceError("invalid reference format: repository name must have at least one component")
    if _HEX64_RE.fullmatch(text):
        raise InvalidReferenceError(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    registry, remainder = _split_registry(text)
    remote = remainder.split("@", 1)[0].split(":", 1)[0]
    if remote.lower() != remote:
        lowered = _lower_path(text, remote)
        valid = _REFERENCE_RE.fullmatch(f"{registry}/{lowered.split('/', 1)[1] if registry != DEFAULT_REGISTRY else lowered}")
        raise InvalidReferenceError(f"invalid reference format: repository name ({remote}) must be lowercase",
                                    hint=f"use '{lowered}'" if valid else _why_invalid(remainder.lower(), text))
    full = f"{registry}/{remainder}"
    m = _REFERENCE_RE.fullmatch(full)
    if m is None:
        raise InvalidReferenceError(f"invalid reference format: {text!r}", hint=_why_invalid(remainder, text))
    name, tag, digest = m.groups()
    if len(name) > NAME_MAX:
        raise InvalidReferenceError(f"invalid reference format: repository name must not be more than {NAME_MAX} characters")
    repository = name[len(registry) + 1:]
    return Reference(registry, repository, tag, _validate_digest(digest, text) if digest else None)


def normalize_tag(name: str) -> str:
    """A local image name as the store keeps it: `busybox` -> `busybox:latest`,
    `docker.io/library/alpine:3` -> `alpine:3` (the familiar name, with a tag; never a digest)."""
    if "@" in name:
        raise InvalidReferenceError(f"invalid image name {name!r}: a tag cannot contain a digest")
    try:
        ref = parse_reference(name)
    except InvalidReferenceError:
        raise InvalidReferenceError(f"invalid image name {name!r}",
                                    hint="use NAME[:TAG] with a lowercase name, e.g. myapp:1.0") from None
    return Reference(ref.registry, ref.repository, ref.tag or DEFAULT_TAG).familiar()


def validate_tag(tag: str) -> str:
    """Return `tag` if it is a valid tag, else raise InvalidReferenceError."""
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(f"invalid tag format: {tag!r}",
                                    hint="a tag is 1-128 of [A-Za-z0-9_.-] and does not start with '.' or '-'")
    return tag


def _split_registry(text: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        registry, remainder = DEFAULT_REGISTRY, text
    else:
        registry, remainder = first, rest
    if registry == _LEGACY_REGISTRY:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = "library/" + remainder
    return registry, remainder


def _validate_digest(digest: str, text: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    want = _DIGEST_HEX.get(algorithm)
    if want is None:
        raise InvalidReferenceError(f"invalid reference format: unsupported digest algorithm {algorithm!r} in {text!r}")
    if len(hex_part) != want or not re.fullmatch(r"[a-f0-9]+", hex_part):
        raise InvalidReferenceError(f"invalid checksum digest format: {digest!r}",
                                    hint=f"a {algorithm} digest is {want} lower-case hex digits")
    return digest


def _lower_path(text: str, remote: str) -> str:
    shown = remote if remote in text else remote.removeprefix("library/")
    return text.replace(shown, shown.lower(), 1)


def _why_invalid(remainder: str, text: str) -> str | None:
    """A hint for the most common mistakes."""
    if "://" in text:
        return "a reference has no URL scheme: write HOST[:PORT]/NAME[:TAG]"
    if "@" in remainder and not re.fullmatch(_DIGEST, remainder.split("@", 1)[1]):
        return "a digest is written name@sha256:<64 hex digits>"
    path = remainder.split("@", 1)[0]
    if path.count(":") > 1 or (":" in path and "/" in path.rsplit(":", 1)[1]):
        return "only one ':TAG' is allowed, after the last '/'"
    if ":" in path and not _TAG_RE.fullmatch(path.rsplit(":", 1)[1]):
        return "a tag is 1-128 of [A-Za-z0-9_.-] and does not start with '.' or '-'"
    if "//" in path or path.endswith("/") or path.startswith("/"):
        return "path components cannot be empty"
    return "name components are lower-case letters and digits, joined by '.', '_', '__' or dashes"
