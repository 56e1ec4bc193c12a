"""The content part of a step's key: a checksum of what it reads (the context, a stage, an image).

    content_key(job, step, from_stage, from_image, sources, excludes, preserve_owner=False) -> str

The result names a {path: checksum} table stored in the build cache (for `pybuild explain`). Reads
of the context are also logged on the job: the no-op memo re-checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from builder.build.ops.rootfs import view_of
from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.job import BuildJob, Step


def content_key(job: BuildJob, step: Step, from_stage: int | None, from_image: str, sources: Sequence[str],
                excludes: Sequence[str], preserve_owner: bool = False) -> str:
    """Checksum of what a step reads: from the context, another stage, or an image."""
    from builder.build import context as ctxmod

    where = step.where
    if from_stage is None and not from_image:
        try:
            rels = job.context.resolve_sources(sources, where=where)
            checksum, table = job.context.checksum_table(rels, excludes=excludes, reuse=True)
            job.reads.add(list(sources), list(excludes), checksum)  # the key names the table (for explain)
            return job.cache.put_inputs(_relative(table))
        except BuildError as exc:
            raise step.error(exc.message.removeprefix(where), hint=exc.hint) from None
    view = view_of(job, step, from_stage, from_image)
    rels = ctxmod.expand_sources(view, sources, where=where)
    other: dict[str, str] = {}
    ctxmod.checksum_sources(view, rels, excludes=excludes, preserve_owner=preserve_owner, table=other)
    return job.cache.put_inputs(_relative(other))


def _relative(table: dict[str, str]) -> dict[str, str]:
    """Inputs tables name files as paths in the context (`./src/a.py` -> `src/a.py`)."""
    return {k[2:] if k.startswith("./") else k: v for k, v in table.items()}
