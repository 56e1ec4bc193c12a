"""Platforms, the one place for them: the host's, parsing (containerd's `platforms.Parse`),
normalising, matching, and choosing a manifest from an index.

    parse("linux/arm64/v8")    Platform("linux", "arm64", "v8")   as written (normalised names)
    normalize(p)               arm64/v8 -> arm64, arm -> arm/v7, aarch64 -> arm64, x86_64 -> amd64
    host()                     this machine, normalised: linux/amd64, linux/arm64, linux/arm/v7
    matches(have, want)        compared normalised; a missing variant matches any
    select(index, want)        the index entry for `want`; an exact variant beats an entry without one
    parse_list("a,b")          ["linux/amd64", "linux/arm64"]: a `--platform` list, normalised, each once
    platform_args(t, b)        BuildKit's predefined TARGET*/BUILD* ARGs for a target and a build platform
"""

from __future__ import annotations

import os
import re

from builder.errors import BuildError
from builder.oci.model import Descriptor, Index, Platform

__all__ = ["PlatformError", "parse", "normalize", "host", "matches", "select", "format_platform", "parse_list",
           "platform_args", "KNOWN_OS", "KNOWN_ARCH"]

KNOWN_OS = frozenset("aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 "
                     "solaris wasip1 windows zos".split())
KNOWN_ARCH = frozenset("386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 "
                       "mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split())
_COMPONENT = re.compile(r"[A-Za-z0-9_-]+")
_MACHINE = {"x86_64": ("amd64", None), "amd64": ("amd64", None), "aarch64": ("arm64", None),
            "arm64": ("arm64", None), "armv8l": ("arm", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
            "armv5tel": ("arm", "v5"), "i386": ("386", None), "i686": ("386", None)}


class PlatformError(BuildError):
    """A platform that cannot be parsed, or that an index has no image for."""


def _normalize_os(name: str) -> str:
    name = name.lower()
    return "darwin" if name == "macos" else name


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's normalizeArch: canonical architecture names and variants."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(variant, variant)
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        return "arm", {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    return arch, variant


def _platform(os_: str, arch: str, variant: str) -> Platform:
    return Platform(os_, arch, variant or None)


def host() -> Platform:
    """This machine's platform, normalised (`linux/amd64`, `linux/arm64`, `linux/arm/v7`)."""
    machine = os.uname().machine.lower()
    arch, variant = _MACHINE.get(machine, (machine, None))
    return normalize(Platform("linux", arch, variant))


def parse(text: str | None) -> Platform:
    """`os[/arch[/variant]]` as containerd's platforms.Parse reads it; None or "" is the host's.

    One part is an OS (with the host's architecture) or an architecture (with the host's OS);
    names are normalised (`aarch64` is arm64, `x86_64` amd64, `armhf` arm/v7), and a variant
    is kept as written (`linux/arm64/v8` keeps v8; `normalize` drops it for comparing).
    """
    if not text:
        return host()
    parts = text.split("/")
    if len(parts) > 3 or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise PlatformError(f"invalid platform {text!r}", hint="use OS[/ARCH[/VARIANT]], e.g. linux/arm64")
    if len(parts) == 1:
        os_ = _normalize_os(parts[0])
        if os_ in KNOWN_OS:
            here = host()
            return Platform(os_, here.architecture, here.variant if here.architecture == "arm" and
                            here.variant != "v7" else None)
        arch, variant = _normalize_arch(parts[0], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        if arch not in KNOWN_ARCH:
            raise PlatformError(f"invalid platform {text!r}: unknown operating system or architecture",
                                hint="use OS[/ARCH[/VARIANT]], e.g. linux/arm64")
        return _platform(host().os, arch, variant)
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        return _platform(_normalize_os(parts[0]), arch, variant)
    arch, variant = _normalize_arch(parts[1], parts[2])
    if arch == "arm64" and not variant:
        variant = "v8"
    return _platform(_normalize_os(parts[0]), arch, variant)


def normalize(p: Platform) -> Platform:
    """`p` with containerd's canonical names (arm64/v8 is arm64, arm is arm/v7), for comparing."""
    arch, variant = _normalize_arch(p.architecture, p.variant or "")
    return Platform(_normalize_os(p.os), arch, variant or None, p.os_version)


def format_platform(p: Platform) -> str:
    """`os/arch[/variant]` of the normalised platform (as BuildKit's TARGETPLATFORM)."""
    return str(normalize(p))


def matches(have: Platform, want: Platform) -> bool:
    """Whether an image for `have` serves `want`: names compared normalised (aarch64 is arm64,
    arm64/v8 is arm64, an arm image without a variant is v7); a `want` without a variant takes any."""
    h = normalize(have)
    arch, variant = _normalize_arch(want.architecture, want.variant or "")
    if (h.os, h.architecture) != (_normalize_os(want.os), arch):
        return False
    if not want.variant:
        return True
    return not (variant and h.variant and variant != h.variant)


def select(index: Index, want: Platform) -> Descriptor:
    """The index entry for `want`; an exact variant match beats an entry without one."""
    w = normalize(want)
    hits = [d for d in index.manifests if d.platform and matches(d.platform, want)]
    hits.sort(key=lambda d: normalize(d.platform).variant != w.variant)  # type: ignore[arg-type]
    if not hits:
        have = ", ".join(sorted(str(d.platform) for d in index.manifests if d.platform)) or "none"
        raise PlatformError(f"no image for platform {want} in the index (it has: {have})",
                            hint="choose one with --platform")
    return hits[0]


def parse_list(text: str | None) -> list[str]:
    """A `--platform` value (`linux/amd64,linux/arm64`) as normalised `os/arch[/variant]` strings, in the
    order given, each once; None or "" is `[]` (the host's). Every item must parse: a list never
    degrades to one half-parsed platform."""
    if not text:
        return []
    out: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise PlatformError("an empty platform", hint="use OS/ARCH[/VARIANT][,OS/ARCH...], e.g. linux/arm64")
        name = format_platform(parse(item))
        if name not in out:
            out.append(name)
    return out


def platform_args(target: str, build: str) -> dict[str, str]:
    """BuildKit's predefined ARGs (TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT and the BUILD*
    ones) for a target and a build platform, both normalised (`linux/arm64/v8` gives TARGETARCH=arm64)."""
    out: dict[str, str] = {}
    for prefix, text in (("TARGET", target), ("BUILD", build)):
        p = normalize(parse(text))
        out[prefix + "PLATFORM"] = str(p)
        out[prefix + "OS"] = p.os
        out[prefix + "ARCH"] = p.architecture
        out[prefix + "VARIANT"] = p.variant or ""
    return out
