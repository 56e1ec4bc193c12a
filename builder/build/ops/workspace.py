"""A step's directory: `upper`, the layer being made, and room for the operation's own files.

Each step writes into a fresh upper dir on top of the stage's layer snapshots; `commit()` turns it
into a layer through the store (`commit_dir`), and an empty directory means no layer. The upper
dir already is that layer in overlay form, so it becomes the layer's snapshot and the next step
does not unpack it again. An upper a RUN's fuse-overlayfs wrote is first put in the kernel
overlay's form (`fuseupper`), so the layer is the one the kernel overlay (and a root build) gives.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from builder.build.job import as_layer_record
from builder.build.ops.rootfs import byte_task, chain_id

if TYPE_CHECKING:
    from builder.build.job import BuildJob, Step
    from builder.store import LayerRecord


class Workspace:
    """A fresh directory in the store's tmp/ for one step, removed when the step ends."""

    def __init__(self, job: BuildJob, step: Step) -> None:
        self.job, self.step = job, step
        self.path = job.tmp_dir / f"step-{os.getpid()}-{os.urandom(6).hex()}"
        job.running.add_dir(self.path)  # registered before it exists: a Ctrl-C in between still finds it
        self.path.mkdir(mode=0o700)
        self.upper = self.path / "upper"
        self.upper.mkdir()
        self.overlay_lower: list[Path] | None = None  # the lower dirs `upper` was an overlay's on (lowest first)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.job.running.drop_dir(self.path)

    def dir(self, name: str) -> Path:
        """A path for the operation's own files (not part of the layer)."""
        return self.path / name

    def commit(self) -> LayerRecord | None:
        """Turn the upper dir into a layer (and its snapshot); None when the step changed nothing."""
        from builder.oci.mutate import source_date_epoch

        job, step = self.job, self.step
        if self.overlay_lower is not None:
            from runtime.overlay import driver

            if driver() == "fuse-overlayfs":
                from builder.build.fuseupper import canonicalize

                canonicalize(self.upper, self.overlay_lower)
        if not any(os.scandir(self.upper)):
            return None
        task = byte_task(job, step.sid, "committing")
        try:
            layer = as_layer_record(job.store.commit_dir(self.upper, compression=job.options.compression,
                                                         level=job.options.compression_level,
                                                         epoch=source_date_epoch(),
                                                         on_bytes=task.update if task is not None else None))
        finally:
            if task is not None:
                task.close()
        snap = job.store.snapshot_path(chain_id(step.layers, layer))
        if not snap.exists():
            os.chmod(self.upper, 0o755)
            try:
                os.rename(self.upper, snap)
            except OSError:
                pass  # another build made it first; it holds the same content
        return layer
