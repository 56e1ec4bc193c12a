"""Incremental COPY: hard links from an earlier result of the same COPY instead of new copies."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Mapping

from builder.build.files.regular import has_xattrs

__all__ = ["Reuse"]


@dataclass
class Reuse:
    """Hard links from an earlier result of the same COPY instead of copies (an incremental re-run).

    `prev_dir` is that result's layer directory, an immutable snapshot (None: nothing to reuse).
    `prev` maps its regular files (layer paths) to (sha256 of the bytes written, inode), as an
    earlier `written` recorded them. `digest_of(host_path, st)` is a source file's sha256 when it
    is known for exactly that stat (the stat cache, which the cache key trusts too), else None.

    A file is linked only when the earlier one has that content and the mode, owner and mtime this
    copy would give it, and neither has xattrs (only xattr-free files are recorded), so the layer
    is byte for byte what a full copy writes. An inode is linked at most once per layer (a tar
    hardlink entry appears only where the sources were hard links) and is never modified after.
    `written` collects {layer path: (sha256, inode)} of the regular files copied or linked and
    still in the layer, for the next re-run (nothing with `unpack`): a copied file's digest is the
    stat cache's when the source did not change during the copy, else hashed while copying.
    """

    prev_dir: str | None
    prev: Mapping[str, tuple[bytes, int]]
    digest_of: Callable[[str, os.stat_result], bytes | None]
    written: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    linked: set[int] = field(default_factory=set)
    frozen_sources: bool = False  # the sources never change (BuildContext.frozen): link them too

    def link_source(self, rel: str, host: str, src_host: str, st: os.stat_result, owner: tuple[int, int],
                    bits: int, digest: bytes | None) -> bool:
        """Hard-link `host` to the source itself when the sources are frozen and it already has the
        mode, owner (and, being the same inode, mtime) the copy would give it, and no xattrs: the
        layer is then byte for byte what a copy writes, without writing the bytes. `digest` (the
        stat cache's, if known) is recorded in `written` for the next re-run."""
        if not self.frozen_sources or st.st_ino in self.linked or stat.S_IMODE(st.st_mode) != bits \
                or (st.st_uid, st.st_gid) != owner or has_xattrs(src_host):
            return False
        try:
            os.link(src_host, host, follow_symlinks=False)
        except OSError:
            return False  # on another filesystem: copy it
        self.linked.add(st.st_ino)
        if digest is not None:
            self.written[rel] = (digest, st.st_ino)
        return True

    def link_previous(self, rel: str, host: str, src_host: str, st: os.stat_result, owner: tuple[int, int],
                      bits: int, digest: bytes) -> bool:
        """Hard-link `host` (layer path `rel`) to the previous result's identical file, if it has one.

        `st` is the source's lstat, `owner` and `bits` what the copy would give the file."""
        hit = self.prev.get(rel)
        if hit is None or hit[0] != digest or self.prev_dir is None or hit[1] in self.linked:
            return False
        old = self.prev_dir + "/" + rel
        try:
            ost = os.lstat(old)  # recorded without xattrs; snapshots never get new ones
            if (ost.st_ino != hit[1] or not stat.S_ISREG(ost.st_mode) or stat.S_IMODE(ost.st_mode) != bits
                    or (ost.st_uid, ost.st_gid) != owner or ost.st_mtime_ns != st.st_mtime_ns
                    or ost.st_size != st.st_size or has_xattrs(src_host)):
                return False
            os.link(old, host, follow_symlinks=False)
        except OSError:
            return False  # gone, or on another filesystem: copy it
        self.linked.add(ost.st_ino)
        self.written[rel] = hit
        return True

    def forget(self, rel: str, is_dir: bool) -> None:
        """The layer entry `rel` was removed (a directory: with everything below it)."""
        if not self.written:
            return
        self.written.pop(rel, None)
        if is_dir:
            below = [k for k in self.written if k.startswith(rel + "/")]
            for k in below:
                del self.written[k]
