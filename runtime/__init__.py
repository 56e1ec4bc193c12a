"""Run one process isolated in Linux namespaces on an overlayfs root. Knows nothing of Dockerfiles."""

from runtime.errors import (
    CgroupError,
    MountError,
    NamespaceError,
    NetworkError,
    ProcessExitError,
    SandboxError,
)
from runtime.executor import Executor, LinuxExecutor, Output
from runtime.spec import ExitStatus, Limits, Mount, NetworkMode, PortMapping, ProcessSpec, RootfsSpec

__all__ = [
    "CgroupError", "Executor", "ExitStatus", "LinuxExecutor", "Output", "Limits", "Mount", "MountError", "NamespaceError", "NetworkError",
    "NetworkMode", "PortMapping", "ProcessExitError", "ProcessSpec", "RootfsSpec", "SandboxError",
]
