"""Layer tars and images whose every number the analysis tests know by hand."""

from __future__ import annotations

import io
import tarfile
from typing import Iterable, Union

from builder.analyze.layers import LayerSource

# a member: "dir/" (directory), ("path", size) (file of `size` bytes of b"x"), ("path", "->target") (symlink),
# ("path", "=>target") (hard link), ("path", size, mode) or ("path", size, mode, uid) (file)
Member = Union[str, tuple[str, int], tuple[str, str], tuple[str, int, int], tuple[str, int, int, int]]


def layer_tar(members: Iterable[Member]) -> bytes:
    """An uncompressed layer tar with the members in the given order (mtimes 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            if isinstance(m, str):
                ti = tarfile.TarInfo(m.rstrip("/"))
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            elif isinstance(m[1], str):
                ti = tarfile.TarInfo(m[0])
                ti.type, ti.linkname = tarfile.LNKTYPE if m[1].startswith("=>") else tarfile.SYMTYPE, m[1][2:]
                tar.addfile(ti)
            else:
                ti = tarfile.TarInfo(m[0])
                ti.size, ti.mode, ti.uid = m[1], *(tuple(m[2:]) + (0o644, 0)[len(m) - 2:])
                tar.addfile(ti, io.BytesIO(b"x" * m[1]))
    return buf.getvalue()


def sources(*layers: list[Member], created_by: Iterable[str] = ()) -> list[LayerSource]:
    """LayerSources over in-memory tars (what the engine reads)."""
    names = list(created_by) or [f"step {i}" for i in range(len(layers))]
    out = []
    for members, name in zip(layers, names):
        data = layer_tar(members)
        out.append(LayerSource(open=lambda data=data: io.BytesIO(data), digest="", created_by=name,
                               compressed_size=len(data) // 2))
    return out


# five layers whose every mark and size the explorer tests know: 3 writes a new /app/main.py and
# /app/static/logo.png, changes /usr/bin/sh's mode and deletes /var/cache/apt.bin; 4 deletes /app/util.py
APP_LAYERS: list[list[Member]] = [
    ["etc/", ("etc/passwd", 1200), ("etc/hosts", 80), "usr/", "usr/bin/", ("usr/bin/sh", 120000), "usr/lib/",
     ("usr/lib/libc.so", 2000000)],
    [("usr/lib/libssl.so", 600000), ("usr/lib/libcrypto.so", 3000000), "var/", "var/cache/",
     ("var/cache/apt.bin", 5000000)],
    ["app/", ("app/main.py", 4000), ("app/util.py", 2500), ("etc/hosts", 90)],
    [("var/cache/.wh.apt.bin", 0), ("app/main.py", 4100), ("app/static/logo.png", 30000), ("usr/bin/sh", 120000, 0o755)],
    [("app/.wh.util.py", 0), ("app/config.json", 300)],
]

