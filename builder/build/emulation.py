"""Emulation for RUN steps of another platform: qemu-user-static registered in binfmt_misc.

    check(platforms)    raise a BuildError naming the platform and the package when one cannot run here

A platform the host runs natively needs nothing (linux/amd64 on amd64, linux/386 on amd64,
linux/arm/v7 on arm64). Any other needs a binfmt_misc entry for its ELF machine with the F (fix
binary) flag, as BuildKit's binfmt image registers them: the kernel opens the emulator when it is
registered, so it works inside a container's rootfs, where /usr/bin/qemu-* does not exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from builder.errors import BuildError

__all__ = ["check", "native", "EmulationError", "BINFMT_DIR", "EMULATED_NICE"]

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")  # $PYBUILD_BINFMT_DIR reads another (tests, chroots)
PACKAGE = "qemu-user-static"
# normalised architecture (and variant) -> the binfmt_misc entry names that run it
_ENTRIES = {"arm64": ("qemu-aarch64", "aarch64"), "arm": ("qemu-arm", "arm"), "amd64": ("qemu-x86_64", "x86_64"),
            "386": ("qemu-i386", "i386"), "ppc64le": ("qemu-ppc64le", "ppc64le"), "s390x": ("qemu-s390x", "s390x"),
            "riscv64": ("qemu-riscv64", "riscv64"), "mips64le": ("qemu-mips64el", "mips64el")}
_NATIVE = {"amd64": {"amd64", "386"}, "arm64": {"arm64", "arm"}, "arm": {"arm"}}


class EmulationError(BuildError):
    """A RUN step for a platform this machine can neither run nor emulate."""


EMULATED_NICE = 10  # emulated RUN steps yield the CPU to native ones (a native half as fast as a native build)


def _native(host_arch: str, arch: str) -> bool:
    return arch == host_arch or arch in _NATIVE.get(host_arch, set())


def native(platform: str) -> bool:
    """Whether this machine runs `platform`'s programs without an emulator ("" is this machine's)."""
    from builder.oci.platform import host, normalize, parse

    if not platform:
        return True
    here, p = host(), normalize(parse(platform))
    return p.os == here.os and _native(here.architecture, p.architecture)


def _binfmt_dir() -> Path:
    return Path(os.environ.get("PYBUILD_BINFMT_DIR") or BINFMT_DIR)


def _registered(names: Iterable[str]) -> str | None:
    """The first of `names` registered and enabled in binfmt_misc with the F flag, else None."""
    for name in names:
        try:
            text = (_binfmt_dir() / name).read_text()
        except OSError:
            continue
        flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags:")), "")
        if text.startswith("enabled") and "F" in flags:
            return name
    return None


def check(platforms: Iterable[str]) -> None:
    """Every platform (normalised `os/arch[/variant]`) can run a RUN step here, natively or through a
    registered emulator; else an EmulationError naming the platform and the package to install."""
    from builder.oci.platform import host, normalize, parse

    here = host()
    for text in platforms:
        p = normalize(parse(text))
        if p.os != here.os:
            raise EmulationError(f"cannot run {text} programs: this machine runs {here.os} programs only",
                                 hint="remove the RUN steps of that stage, or build on a machine of that OS")
        if _native(here.architecture, p.architecture):
            continue
        if _registered(_ENTRIES.get(p.architecture, ())) is None:
            where = ("binfmt_misc is not mounted" if not (_binfmt_dir() / "register").exists()
                     else f"no emulator for {p.architecture} is registered in {_binfmt_dir()} with the F flag")
            raise EmulationError(
                f"cannot run {text} programs (a RUN step, pybuild run) on this {here} machine: {where}",
                hint=f"install Debian's {PACKAGE} (apt-get install {PACKAGE}) and register its emulators "
                     "(scripts/register-binfmt, or systemd-binfmt)")
