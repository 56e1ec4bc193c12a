"""COPY and ADD: from the context, another stage, an image, a URL or a git repository.

The key holds the instruction's fields and a checksum of what it reads: the context's or a
stage's files (an inputs table), each URL's download (digest, name, mtime: keyed on what the
server sends now, unless `--checksum` pins it), or a git source's resolved commit. A COPY from
the context re-run links the files that did not change from its previous result (`files.reuse`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from builder.build.job import StepOutput
from builder.build.ops.inputs import content_key
from builder.build.ops.rootfs import chain_id, target_view, view_of
from builder.cache.keys import CacheKey, sha256_of
from builder.errors import BuildError

if TYPE_CHECKING:
    from builder.build.files.reuse import Reuse
    from builder.build.graph import FileCopy
    from builder.build.job import BuildJob, Step
    from builder.build.ops.workspace import Workspace


def is_url(source: str) -> bool:
    """Whether an ADD source is a file to download."""
    from builder.build.sources.git import is_download_url

    return is_download_url(source)


class CopyOp:
    """COPY / ADD into the stage's file system."""

    def __init__(self, op: FileCopy) -> None:
        self.op = op
        self.kind = op.kind

    # --- key -----------------------------------------------------------------------------------

    def key(self, job: BuildJob, step: Step) -> CacheKey:
        op = self.op
        parent = step.parent.digest
        desc = {"kind": op.kind, "sources": list(op.sources), "dest": op.dest, "cwd": op.cwd,
                "chown": op.chown, "chmod": op.chmod, "link": op.link, "parents": op.parents,
                "excludes": list(op.excludes), "checksum": op.checksum, "from_image": op.from_image,
                "heredocs": [list(h) for h in op.heredocs], "user": op.user if op.chown else ""}
        if op.kind == "ADD" and op.git:
            from builder.build.sources.git import redact

            desc["sources"] = [redact(op.sources[0])]  # key parts are stored in build records
            return CacheKey.make(parent=parent, op=desc, git=self._git_key(job))
        local = [s for s in op.sources if not is_url(s)] if op.kind == "ADD" else list(op.sources)
        from_other = op.from_stage is not None or bool(op.from_image)
        inputs = content_key(job, step, op.from_stage, op.from_image, local, op.excludes,
                             preserve_owner=from_other and not op.chown) if local else None
        urls = None
        if op.kind == "ADD" and not op.checksum and any(is_url(s) for s in op.sources):
            urls = [self._url_key(job, u) for u in op.sources if is_url(u)]
        return CacheKey.make(parent=parent, op=desc, inputs=inputs, urls=urls)

    def _git_key(self, job: BuildJob) -> list[Any]:
        from builder.build.sources import git as gitsource

        op = self.op
        src = gitsource.parse_git_url(op.sources[0])
        commit = job.git.commit(op.sources[0], job.git_env())
        if op.checksum and op.checksum != commit:
            raise BuildError(f"ADD {src.shown}: {src.ref or 'HEAD'} is commit {commit}, not the --checksum "
                             f"{op.checksum}")
        return [src.shown, commit, src.subdir, op.keep_git_dir]

    @staticmethod
    def _url_key(job: BuildJob, url: str) -> list[Any]:
        """Download an ADD URL (once per build) for its key; the step reuses the download."""
        f = job.downloads.get(url)
        return [url, f.digest, f.name, f.mtime]

    # --- run -----------------------------------------------------------------------------------

    def run(self, job: BuildJob, step: Step, ws: Workspace) -> StepOutput:
        reuse = self._copy(job, step, ws)
        layer = ws.commit()
        if reuse is not None and reuse.written and layer is not None:
            job.cache.put_copy_result(self._lineage(job, step), chain_id(step.layers, layer), reuse.written)
        return StepOutput(layer)

    def _copy(self, job: BuildJob, step: Step, ws: Workspace) -> Reuse | None:
        """Copy into `ws.upper`; returns the Reuse it used (None: none)."""
        from builder.build import context as ctxmod
        from builder.build.files.copy import HeredocSource, Item, copy_files
        from builder.build.files.ownership import parse_chmod, resolve_owner
        from builder.build.fsview import RootView
        from builder.build.sources.http import fetch_url

        op, upper, where = self.op, ws.upper, step.where
        target = None if op.link else target_view(job, step.layers, step.sid)
        owner = resolve_owner(op.chown, target_view(job, step.layers)) if op.chown else None
        chmod = parse_chmod(op.chmod) if op.chmod else None
        items: list[Item] = [HeredocSource(name, content.encode()) for name, content in op.heredocs]
        ignore = None
        if op.git:
            from builder.build.sources import git as gitsource

            url = op.sources[0]
            root = gitsource.checkout(gitsource.parse_git_url(url), job.git.commit(url, job.git_env()),
                                      ws.dir("git"), keep_git_dir=op.keep_git_dir, env=job.git_env())
            copy_files(upper, ["."], op.dest, src=root, target=target, workdir=op.cwd, owner=owner,
                       chmod=chmod, excludes=op.excludes, link=op.link, where=where)
            return None
        src: RootView | None
        if op.from_stage is not None or op.from_image:
            src = view_of(job, step, op.from_stage, op.from_image)
            local = list(op.sources)
        else:
            local = [s for s in op.sources if not (op.kind == "ADD" and is_url(s))]
            src = job.context.view if local else None
            ignore = job.context.ignore
            for url in (s for s in op.sources if s not in local):
                fetched = job.downloads.known(url)
                items.append(fetched or fetch_url(url, ws.dir("fetch"), checksum=op.checksum or None))
        if local:
            assert src is not None
            items.extend(ctxmod.expand_sources(src, local, ignore=ignore, where=where))
        reuse = self._reuse(job, step)
        copy_files(upper, items, op.dest, src=src, target=target, workdir=op.cwd, owner=owner, chmod=chmod,
                   excludes=op.excludes, parents=op.parents, link=op.link, ignore=ignore,
                   unpack=op.kind == "ADD", where=where,
                   preserve_owner=op.from_stage is not None or bool(op.from_image), reuse=reuse,
                   warn=lambda message: job.progress.info(f"WARNING: {message}"))
        return reuse

    def _lineage(self, job: BuildJob, step: Step) -> str:
        """What makes two runs of a COPY "the same step": the instruction, its parent's key and the
        context directory (a local hint, never part of a cache key)."""
        return sha256_of(["copy-lineage", str(job.context.root), step.parent.digest, repr(self.op)])

    def _reuse(self, job: BuildJob, step: Step) -> Reuse | None:
        """A Reuse for a COPY from the context: the previous result of the same COPY (if its
        snapshot is still there) and the context's stat cache, which knows the unchanged files'
        digests. None where the layer may hold more than copies of context files (heredocs, ADD)."""
        from builder.build.files.reuse import Reuse
        from builder.cache.stat import StatCache

        op, ctx = self.op, job.context
        if op.kind != "COPY" or op.heredocs or op.from_stage is not None or op.from_image or ctx.root is None \
                or ctx.scratch:
            return None
        view = ctx.view
        statcache = StatCache.for_root(view)
        root = str(view.root) + "/"
        cut = len(root)

        def digest_of(host: str, st: os.stat_result) -> bytes | None:
            return statcache.digest(host[cut:], st) if host.startswith(root) else None

        prev = job.cache.copy_result(self._lineage(job, step))
        if prev is not None:
            snap = job.store.snapshot_path(prev[0])
            if snap.is_dir():
                return Reuse(str(snap), prev[1], digest_of, frozen_sources=ctx.frozen)
        return Reuse(None, {}, digest_of, frozen_sources=ctx.frozen)
