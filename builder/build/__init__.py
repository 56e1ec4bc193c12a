"""Build a Dockerfile into an image: `build(BuildOptions(context=".", tags=("app",)), progress)`.

The package holds the build graph (graph, convert), the build context (context, dockerignore,
fsview), the operations and their scheduling (ops, solver), file copying (files), remote sources
(sources), the end of a build (export) and the build records. `build()` is its one entry point;
nothing here parses command lines. Names are imported lazily: this package is imported by every
build module, and the cached no-op rebuild must stay lean.
"""

from __future__ import annotations


TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from threading import Event
    from typing import Any
    from builder.build.options import BuildOptions, BuildResult, Output
    from builder.util.progress import Progress

__all__ = ["build", "BuildOptions", "BuildResult", "Output"]


def build(options: BuildOptions, progress: Progress | None = None, cancel: Event | None = None) -> BuildResult:
    """Run one build; `progress` (default: none shown) reports its steps and is left open. Setting
    `cancel` (from another thread) stops it: no step starts, running processes are killed."""
    from builder.build.runner import run_build

    if progress is None:
        from builder.util.progress import make_progress

        progress = make_progress("quiet")
        try:
            return run_build(options, progress, cancel)
        finally:
            progress.close()
    return run_build(options, progress, cancel)


def __getattr__(name: str) -> Any:
    if name in ("BuildOptions", "BuildResult", "Output"):
        from builder.build import options

        return getattr(options, name)
    raise AttributeError(f"module 'builder.build' has no attribute {name!r}")
