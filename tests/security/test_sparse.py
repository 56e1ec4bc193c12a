"""Issue 12, item 11: sparse files stay sparse in the whole store (the extracted file, the layer
blob, the snapshot), whatever form the tar gives them (GNU sparse, PAX sparse, a plain member of
zeros), and their content and digests are the same bytes as the file's; GNU/PAX sparse members in
image layers (load, pull) are read as the files they stand for, with holes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import pybuild, requires_root, requires_tool

SIZE = 2 << 30
# data at the start, in the middle (not block-aligned), a run of many small pieces, and at the very end
SEGMENTS = [(0, b"head" * 1000), (SIZE // 2 + 1234, os.urandom(300_000))] + \
    [(SIZE // 4 + i * (256 << 10), b"x" * 100) for i in range(40)] + [(SIZE - 6, b"tail!!")]


def _sparse_file(path: Path, size: int = SIZE) -> str:
    """A file of `size` bytes, holes but for SEGMENTS (scaled to size); returns its sha256."""
    segments = sorted((off * size // SIZE if off else 0, data) for off, data in SEGMENTS)
    segments[-1] = (size - len(segments[-1][1]), segments[-1][1])
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in segments:
            f.seek(off)
            f.write(data)
    h, pos = hashlib.sha256(), 0
    zeros = bytes(1 << 20)
    for off, data in segments:
        while pos < off:
            n = min(off - pos, len(zeros))
            h.update(zeros[:n])
            pos += n
        h.update(data)
        pos += len(data)
    return h.hexdigest()


def _plain_tar(path: Path, src: Path, name: str) -> None:
    """A ustar archive with `src` as a plain member (no sparse entry), written with holes so the
    test itself does not fill the disk: the archive's bytes are what a plain tar would hold."""
    size = src.stat().st_size
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    header = info.tobuf(tarfile.GNU_FORMAT)
    with open(src, "rb") as f, open(path, "wb") as out:
        out.write(header)
        fd, pos = f.fileno(), 0
        while True:
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, pos, os.SEEK_HOLE)
            out.seek(len(header) + pos)
            out.write(os.pread(fd, end - pos, pos))
            pos = end
        out.truncate(len(header) + size + (-size % 512) + 1024)


def _allocated(root: Path) -> tuple[int, int]:
    """(bytes allocated on disk, apparent bytes) of every file under root."""
    used = apparent = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            used, apparent = used + st.st_blocks * 512, apparent + st.st_size
    return used, apparent


def _layer_file_digest(root: Path, ref: str, name: str) -> str:
    """The sha256 of file `name` as the image's top layer tar holds it (read from the store's blob)."""
    from builder.oci.layer.decode import iter_tar
    from builder.store import Store

    store = Store.open(root)
    image = store.resolve(ref)
    with image.layers()[-1].open_uncompressed() as f:
        for h, read in iter_tar(f):
            if h.name.lstrip("./") == name:
                digest = hashlib.sha256()
                while chunk := read(1 << 20):
                    digest.update(chunk)
                return digest.hexdigest()
    raise AssertionError(f"{name} not in the layer")


@requires_root
@requires_tool("tar")
@pytest.mark.parametrize("form", ["gnu", "posix", "plain"])
def test_an_added_sparse_file_stays_sparse_in_the_whole_store(form: str, tmp_path: Path) -> None:
    big = tmp_path / "big"
    want = _sparse_file(big)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nADD big.tar /\n")
    if form == "plain":
        _plain_tar(ctx / "big.tar", big, "big")
    else:
        subprocess.run(["tar", f"--format={form}", "--sparse", "-cf", str(ctx / "big.tar"), "-C", str(tmp_path),
                        "big"], check=True)
        assert (ctx / "big.tar").stat().st_size < 8 << 20  # the archive holds a sparse entry
    big.unlink()
    root = tmp_path / "store"
    pybuild("build", "-q", "-t", "sparse:1", str(ctx), env={"PYBUILD_ROOT": str(root)})
    used, apparent = _allocated(root)
    assert apparent > 2 * SIZE  # the extracted file (snapshot) and the uncompressed layer blob, each full size
    assert used < 100 << 20, (used, apparent)  # ... but written as holes
    assert _layer_file_digest(root, "sparse:1", "big") == want


def _layer_tar(path: Path, src_dir: Path, form: str) -> tuple[str, int]:
    subprocess.run(["tar", f"--format={form}", "--sparse", "-cf", str(path), "-C", str(src_dir), "."], check=True)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size


@requires_root
@requires_tool("tar")
def test_sparse_members_in_image_layers_are_unpacked_with_holes(tmp_path: Path) -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    members, layers, diff_ids, wants = {}, [], [], {}
    for i, form in enumerate(("gnu", "posix")):
        src = tmp_path / f"src{i}"
        src.mkdir()
        wants[f"f{i}"] = _sparse_file(src / f"f{i}", 256 << 20)
        diff_id, _ = _layer_tar(tmp_path / f"l{i}.tar", src, form)
        members[f"l{i}.tar"] = (tmp_path / f"l{i}.tar").read_bytes()
        layers.append(f"l{i}.tar")
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    members["config.json"] = config
    members["manifest.json"] = json.dumps([{"Config": "config.json", "RepoTags": ["sparse-load:1"],
                                            "Layers": layers}]).encode()
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    env = {"PYBUILD_ROOT": str(tmp_path / "store")}
    pybuild("load", "-i", str(archive), env=env)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM sparse-load:1\n")
    out = tmp_path / "out"
    pybuild("build", "-q", "-o", f"type=local,dest={out}", str(ctx), env=env)
    from builder.store import Store

    store = Store.open(tmp_path / "store")
    snapshots = store.rootfs_dirs(store.resolve("sparse-load:1"))
    for i, name in enumerate(("f0", "f1")):
        for path in (out / name, snapshots[i] / name):
            st = path.stat()
            assert st.st_size == 256 << 20 and st.st_blocks * 512 < 4 << 20, (path, st.st_blocks)
            with open(path, "rb") as f:
                assert hashlib.file_digest(f, "sha256").hexdigest() == wants[name], path


@pytest.mark.parametrize("form,version", [("gnu", None), ("posix", "0.0"), ("posix", "0.1"), ("posix", "1.0")])
@requires_tool("tar")
def test_every_gnu_sparse_form_decodes_as_tarfile_reads_it(form: str, version: str | None, tmp_path: Path) -> None:
    from builder.oci.layer.decode import iter_tar

    _sparse_file(tmp_path / "f", 8 << 20)  # 40+ segments: old GNU headers need extension blocks
    (tmp_path / "plain").write_bytes(b"plain")
    archive = tmp_path / "a.tar"
    subprocess.run(["tar", f"--format={form}", "--sparse", *([f"--sparse-version={version}"] if version else []),
                    "-cf", str(archive), "-C", str(tmp_path), "f", "plain"], check=True)
    with tarfile.open(archive) as t:
        want = {m.name: (m.size, hashlib.sha256(t.extractfile(m).read()).hexdigest())  # type: ignore[union-attr]
                for m in t if m.isreg()}
    got = {}
    with open(archive, "rb") as f:
        for h, read in iter_tar(f):
            digest = hashlib.sha256()
            while chunk := read(1 << 16):
                digest.update(chunk)
            got[h.name] = (h.size, digest.hexdigest())
    assert got == want


def test_a_bad_gnu_sparse_map_is_a_format_error() -> None:
    from builder.errors import ImageFormatError
    from builder.oci.layer import gnusparse

    for segments, stored in (([(0, 10), (5, 10)], 20), ([(0, 10), (95, 10)], 20), ([(0, 10)], 11)):
        with pytest.raises(ImageFormatError, match="GNU sparse map"):
            gnusparse.reader(lambda n: b"", segments, 100, stored, "f")
    with pytest.raises(ImageFormatError, match="malformed GNU sparse map"):
        gnusparse.pax_map({b"GNU.sparse.map": b"1,2,3"}, lambda n: b"", "f")


def test_gzip_of_holes_is_the_same_bytes_with_the_zero_block_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel gzip deflates a zero block that follows zeros once and reuses the bytes; the
    stream must be byte-identical to deflating every block (layer digests depend on it)."""
    import gzip

    from builder.oci import compress

    data = bytes(3 << 20) + os.urandom(100_000) + bytes(5 << 20) + b"end" + bytes(2 << 20)

    def gz(chunks: int) -> bytes:
        out: list[bytes] = []
        c = compress.compressor(compress.GZIP, out.append, threads=2)
        for i in range(0, len(data), chunks):
            c.write(data[i:i + chunks])
        c.close()
        return b"".join(out)

    with_memo = gz(700_001)
    assert compress._ZERO_DEFLATED  # the memo was used
    monkeypatch.setattr(compress, "_ZERO_DICT", b"never")  # no block matches: every block deflated
    assert gz(1 << 20) == with_memo and gzip.decompress(with_memo) == data
