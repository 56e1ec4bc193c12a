"""The file systems a step reads: its stage's layers, another stage's result, an image.

    lower_dirs(job, layers, sid=None) -> [Path]        snapshot directories, lowest first
    target_view(job, layers, sid=None) -> RootView | None   the image being built on (None: no layers)
    view_of(job, step, from_stage, from_image) -> RootView  COPY --from, RUN --mount from=
    chain_id(layers, layer) -> str                     the chain id of `layers` plus `layer`

Snapshots are unpacked on first use, with a progress bar for step `sid` on a TTY.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from builder.build.job import as_layer_record
from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.fsview import RootView
    from builder.build.job import BuildJob, Step
    from builder.store import LayerRecord
    from builder.util.progress import ByteTask


def byte_task(job: BuildJob, sid: int | None, what: str) -> ByteTask | None:
    """A progress bar for byte work of step `sid`; None when progress draws none (no counting)."""
    if sid is None or not job.progress.shows_bytes:
        return None
    return job.progress.bytes_task(sid, what, None)


def lower_dirs(job: BuildJob, layers: Sequence[LayerRecord], sid: int | None = None) -> list[Path]:
    """Snapshot directories of a layer chain, lowest first."""
    task = byte_task(job, sid, "unpacking")
    try:
        dirs = job.store.snapshot_dirs([str(layer.diff_id) for layer in layers],
                                       on_bytes=task.update if task is not None else None)
    finally:
        if task is not None:
            task.close()
    return [Path(p) for p in dirs]


def target_view(job: BuildJob, layers: Sequence[LayerRecord], sid: int | None = None) -> RootView | None:
    """The root file system a step builds on; None when the stage has no layers yet."""
    from builder.build.fsview import RootView

    dirs = lower_dirs(job, layers, sid)
    return RootView(list(reversed(dirs))) if dirs else None


def view_of(job: BuildJob, step: Step, from_stage: int | None, from_image: str) -> RootView:
    """A view of another stage's result or of an image (an empty directory for no layers)."""
    from builder.build.fsview import RootView

    layers: Sequence[LayerRecord]
    if from_stage is not None:
        layers = step.stages[from_stage].layers
    else:
        from builder.build.convert import host_platform

        platform = step.stage.platform if step.stage.platform != host_platform() else ""  # the stage's platform's image
        try:
            image = job.images(from_image, platform)
        except BuildError as exc:  # most often a mistyped stage name: say so, not just "pull failed"
            raise BuildError(f"--from={from_image}: no stage of this Dockerfile has that name, and as an "
                             f"image: {exc.message}", hint=exc.hint) from None
        layers = [as_layer_record(layer) for layer in image.layers()]
    dirs = lower_dirs(job, layers)
    if not dirs:
        empty = job.tmp_dir / "empty-rootfs"
        empty.mkdir(parents=True, exist_ok=True)
        return RootView(empty)
    return RootView(list(reversed(dirs)))


def chain_id(layers: Sequence[LayerRecord], layer: LayerRecord) -> str:
    """The chain id of `layers` plus `layer` (names the new layer's snapshot)."""
    from builder.oci.model import chain_ids

    return str(chain_ids([str(x.diff_id) for x in layers] + [str(layer.diff_id)])[-1])
