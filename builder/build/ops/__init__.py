"""The build operations: one module per kind of step, each holding its cache key and its execution.

    operation_for(op) -> Operation     RUN (exec), COPY/ADD (copy), WORKDIR (mkdir)
    execute(job, step) -> StepOutput   run a step the cache did not have, in a fresh workspace

Nodes whose op is a `ConfigChange` (ENV, LABEL, CMD, ...) make no layer and have no operation:
their effect is in the node's config, and the solver records only their history entry.
The op modules import their heavy dependencies (the runtime, file copying, git) when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from builder.build.graph import Exec, FileCopy, Mkdir
from builder.build.ops.copy import CopyOp
from builder.build.ops.exec import ExecOp
from builder.build.ops.mkdir import MkdirOp
from builder.build.ops.workspace import Workspace
from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.graph import Op
    from builder.build.job import BuildJob, Step, StepOutput
    from builder.build.ops.base import Operation

__all__ = ["operation_for", "execute"]

_OPERATIONS: dict[type, Callable[[Any], Operation]] = {Exec: ExecOp, FileCopy: CopyOp, Mkdir: MkdirOp}


def operation_for(op: Op) -> Operation:
    """The operation that keys and runs `op`."""
    make = _OPERATIONS.get(type(op))
    if make is None:
        raise BuildError(f"internal error: cannot run {type(op).__name__}")
    return make(op)


def execute(job: BuildJob, step: Step) -> StepOutput:
    """Run a step whose result the cache did not have."""
    operation = operation_for(step.node.op)
    with Workspace(job, step) as ws:
        return operation.run(job, step, ws)
