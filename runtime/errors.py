"""Errors raised by the container runtime. Imports nothing from the project.

SandboxError
 +-- NamespaceError
 +-- MountError
 +-- NetworkError
 +-- CgroupError
 +-- ProcessExitError(code, argv)
"""

from __future__ import annotations


class SandboxError(Exception):
    """Root of the runtime's errors; `hint` says what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return self.message + (f"\nhint: {self.hint}" if self.hint else "")


class NamespaceError(SandboxError):
    """unshare/setns/pivot_root failed."""


class MountError(SandboxError):
    """A mount or unmount failed."""


class NetworkError(SandboxError):
    """Network setup (links, addresses, routes, port forwarding) failed."""


class CgroupError(SandboxError):
    """A cgroup could not be created, limited or removed."""


class ProcessExitError(SandboxError):
    """The contained process exited non-zero (a signal death is 128+N)."""

    def __init__(self, code: int, argv: list[str], *, hint: str | None = None) -> None:
        super().__init__(f"process {argv!r} exited with code {code}", hint=hint)
        self.code, self.argv = code, argv
