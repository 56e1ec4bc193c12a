"""WORKDIR: make the directory (owned by the stage's USER) when the image does not have it."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

from builder.build.job import StepOutput
from builder.build.ops.rootfs import target_view
from builder.cache.keys import CacheKey
from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.graph import Mkdir
    from builder.build.job import BuildJob, Step
    from builder.build.ops.workspace import Workspace


class MkdirOp:
    """WORKDIR's directory, as BuildKit's MkdirAll makes it."""

    kind = "WORKDIR"

    def __init__(self, op: Mkdir) -> None:
        self.op = op

    def key(self, job: BuildJob, step: Step) -> CacheKey:
        return CacheKey.make(parent=step.parent.digest, op={"kind": "WORKDIR", "path": self.op.path,
                                                            "user": self.op.user})

    def run(self, job: BuildJob, step: Step, ws: Workspace) -> StepOutput:
        from builder.build.files.copy import copy_files
        from builder.build.files.ownership import resolve_owner

        op, upper = self.op, ws.upper
        target = target_view(job, step.layers)
        if target is not None:  # an existing directory (symlinks followed) writes nothing
            st = target.lstat(target.resolve(op.path))
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise BuildError(f"mkdir {op.path}: not a directory")
            if st is not None:
                return StepOutput(ws.commit())
        # BuildKit's mkdir: a USER missing from /etc/passwd owns nothing (root); RUN is where it fails
        owner = resolve_owner(op.user, target, lenient=True) if op.user else None
        # no items: the destination directory and its parents, made through in-root symlinks
        copy_files(upper, [], op.path.rstrip("/") + "/", target=target, owner=owner)
        return StepOutput(ws.commit())
