"""What every operation offers the solver: its kind, its cache key, and how to run it.

An operation is made for one graph op (`ExecOp(Exec(...))`); `builder.build.ops.operation_for`
picks its class. `key` must be cheap when the inputs are unchanged (a cached build calls it for
every step); `run` is called only on a cache miss, in a fresh `Workspace`, and commits the layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from builder.build.job import BuildJob, Step, StepOutput
    from builder.build.ops.workspace import Workspace
    from builder.cache.keys import CacheKey


class Operation(Protocol):
    """One step's operation: RUN, COPY/ADD, WORKDIR."""

    @property
    def kind(self) -> str:
        """How build records name it: RUN | COPY | ADD | WORKDIR."""

    def key(self, job: BuildJob, step: Step) -> CacheKey:
        """The step's cache key: its op, its parent's key and the content it reads."""

    def run(self, job: BuildJob, step: Step, ws: Workspace) -> StepOutput:
        """Run the step into `ws.upper` and commit it (`ws.commit()`)."""
