"""Issue 12, items 4-12: hostile input and faults give one located line and a non-zero exit, never
`pybuild: internal error`; leftovers of killed builds are cleaned; sizes are verified; holes stay
holes; a skipped socket is named."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.builder.registry_server import FaultProxy, Registry, needs_registry
from tests.conftest import ROOT, pybuild, requires_root, requires_tool

pytestmark = requires_root


def _ctx(tmp_path: Path, dockerfile: str, name: str = "ctx") -> Path:
    ctx = tmp_path / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


# --- 4. full disk and I/O errors -------------------------------------------------------------------

def test_outputs_to_a_full_or_failing_file_are_named(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo hi > /x\n")
    for out in ("type=oci,dest=/dev/full", "type=docker,dest=/dev/full", "type=tar,dest=/dev/full"):
        proc = pybuild("build", "-q", "-o", out, str(ctx), env=store, check=False)
        _clean_failure(proc, "cannot write /dev/full: No space left on device (writing the ")
    _clean_failure(pybuild("save", "-o", "/dev/full", "busybox", env=store, check=False),
                   "cannot write /dev/full: No space left on device (writing the image archive)")
    _clean_failure(pybuild("build", "-q", "--metadata-file", "/proc/version", str(ctx), env=store, check=False),
                   "cannot write /proc/version", "(writing the build metadata (--metadata-file))")


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 6 MiB tmpfs of this test's own."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_store_names_what_was_written_and_stays_consistent(small_fs: Path, busybox_tar: Path,
                                                                  tmp_path: Path) -> None:
    from builder.errors import StoreError
    from builder.store import Store

    store = Store.open(small_fs / "store")
    with pytest.raises(StoreError, match=rf"cannot write a blob to the store at {small_fs / 'store'} "
                                         r"\(\d+ bytes written\): No space left on device"):
        store.put_stream(io.BytesIO(os.urandom(8 << 20)))
    assert os.listdir(small_fs / "store" / "tmp") == []  # the partial blob is gone
    # through the CLI: a build whose layer does not fit fails with a located line, and the store still works
    env = {"PYBUILD_ROOT": str(small_fs / "store")}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    ctx = _ctx(tmp_path, "FROM busybox\nRUN head -c 2500000 /dev/urandom > /a\nRUN head -c 2500000 /dev/urandom > /b\n")
    proc = pybuild("build", "-q", str(ctx), env=env, check=False)
    _clean_failure(proc, "Dockerfile:")
    assert pybuild("images", env=env).returncode == 0
    for blob in (small_fs / "store" / "blobs" / "sha256").iterdir():  # nothing torn was stored
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


# --- 5. names that are not UTF-8 ------------------------------------------------------------------

def test_non_utf8_names_are_keyed_and_copied_as_bytes(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY . /d/\nRUN --mount=type=bind,target=/m cat /m/bad* > /from-mount\n")
    with open(bytes(ctx) + b"/bad\xff", "w") as f:
        f.write("one")
    out = tmp_path / "out"
    proc = pybuild("build", "--progress=plain", "-o", f"type=local,dest={out}", str(ctx), env=store, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(bytes(out) + b"/d") == [b"Dockerfile", b"bad\xff"] or \
        sorted(os.listdir(bytes(out) + b"/d")) == [b"Dockerfile", b"bad\xff"]
    assert (out / "from-mount").read_text() == "one"
    again = pybuild("build", "--progress=plain", str(ctx), env=store)
    assert again.stderr.count("CACHED") == 2, again.stderr  # the same bytes give the same key
    with open(bytes(ctx) + b"/bad\xff", "w") as f:
        f.write("two")
    changed = pybuild("build", "--progress=plain", str(ctx), env=store)
    assert "CACHED" not in changed.stderr


# --- 6. deeply nested JSON -------------------------------------------------------------------------

def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A plain tar of regular files (name -> bytes), in the given order."""
    with tarfile.open(path, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_deep_json_in_archives_is_refused(store: dict[str, str], tmp_path: Path) -> None:
    deep = b"[" * 200000
    cases = {
        "config": {"manifest.json": json.dumps([{"Config": "c.json", "Layers": []}]).encode(), "c.json": deep},
        "manifest": {"manifest.json": deep},
        "index": {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": b'{"manifests":' + deep},
    }
    for name, members in cases.items():
        archive = write_tar(tmp_path / f"{name}.tar", members)
        _clean_failure(pybuild("load", "-i", str(archive), env=store, check=False),
                       f"{archive}: ", "JSON nested too deeply")


def test_deep_json_from_a_registry_or_a_cache_is_refused(store: dict[str, str], tmp_path: Path) -> None:
    """A registry whose error bodies, manifests and cache documents nest JSON past the recursion limit
    (a real registry refuses to store such a manifest, so a server of the test's own serves them on
    127.0.0.1), and a --cache-from directory whose index.json does the same."""
    import http.server
    import threading

    deep = b"[" * 65536

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            manifest = "/manifests/" in self.path and "/err/" not in self.path
            self.send_response(200 if manifest else 404)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json" if manifest
                             else "application/json")
            self.send_header("Content-Length", str(len(deep)))
            self.end_headers()
            self.wfile.write(deep)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        for ref in (f"{host}/err/x:1", f"{host}/deep/x:1"):
            _clean_failure(pybuild("pull", ref, env={**store, "PYBUILD_REGISTRY_RETRIES": "0"}, check=False), host)
        ctx = _ctx(tmp_path, "FROM busybox\nRUN true\n")
        _clean_failure(pybuild("build", "-q", "--cache-from", f"type=registry,ref={host}/deep/cache:1", str(ctx),
                               env={**store, "PYBUILD_REGISTRY_RETRIES": "0"}, check=False), host)
    finally:
        server.shutdown()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "index.json").write_bytes(deep)
    _clean_failure(pybuild("build", "-q", "--cache-from", f"type=local,src={cache}", str(ctx), env=store, check=False),
                   f"{cache / 'index.json'}: JSON nested too deeply")


def test_deep_or_huge_manifest_json_is_an_image_format_error() -> None:
    from builder.errors import ImageFormatError
    from builder.oci.model import MAX_JSON_BYTES, Index, Manifest, loads_json

    for parse in (Manifest.from_json, Index.from_json):
        with pytest.raises(ImageFormatError, match="nested too deeply"):
            parse(b'{"layers":' + b"[" * 200000)
    with pytest.raises(ImageFormatError, match="MiB allowed"):
        loads_json(b" " * (MAX_JSON_BYTES + 1), "manifest")


# --- 7. ids out of range ---------------------------------------------------------------------------

def test_a_huge_uid_is_a_located_error(store: dict[str, str], tmp_path: Path) -> None:
    for dockerfile, line in (("FROM busybox\nUSER 99999999999999999999\nWORKDIR /w\n", "Dockerfile:3"),
                             ("FROM busybox\nCOPY --chown=1:4294967295 Dockerfile /x\n", "Dockerfile:2"),
                             ("FROM busybox\nUSER 99999999999999999999\nRUN true\n", "Dockerfile:3")):
        proc = pybuild("build", "-q", str(_ctx(tmp_path, dockerfile)), env=store, check=False)
        _clean_failure(proc, line)


# --- 8. descriptor sizes ---------------------------------------------------------------------------

def test_a_descriptor_with_a_false_size_is_refused(store: dict[str, str], tmp_path: Path) -> None:
    archive = tmp_path / "oci.tar"
    pybuild("save", "--format", "oci", "-o", str(archive), "busybox", env=store)
    for claimed in (100, 10 ** 12):
        layout = tmp_path / f"layout-{claimed}"
        with tarfile.open(archive) as t:
            t.extractall(layout, filter="data")
        index = json.loads((layout / "index.json").read_text())
        mdesc = index["manifests"][0]
        mpath = layout / "blobs" / "sha256" / mdesc["digest"].split(":")[1]
        manifest = json.loads(mpath.read_bytes())
        real = manifest["layers"][0]["size"]
        manifest["layers"][0]["size"] = claimed
        raw = json.dumps(manifest).encode()
        digest = hashlib.sha256(raw).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(raw)
        mdesc.update(digest=f"sha256:{digest}", size=len(raw))
        (layout / "index.json").write_text(json.dumps(index))
        _clean_failure(pybuild("load", "-i", str(layout), env=store, check=False),
                       f"is {real} bytes, its descriptor says {claimed}")
        # the manifest's own descriptor is checked the same way
        mdesc["size"] = len(raw) + 1
        (layout / "index.json").write_text(json.dumps(index))
        _clean_failure(pybuild("load", "-i", str(layout), env=store, check=False),
                       f"is {len(raw)} bytes, its descriptor says {len(raw) + 1}")


# --- 9. leftovers of a killed build ----------------------------------------------------------------

def test_a_killed_builds_temp_data_is_removed_by_the_next_command(busybox_tar: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYBUILD_ROOT": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    ctx = _ctx(tmp_path, "FROM busybox\nRUN head -c 1000000 /dev/zero > /f && sleep 60\n")
    build = subprocess.Popen([sys.executable, "-m", "builder", "build", "-q", str(ctx)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tmp_path / "store" / "tmp"
    deadline = time.monotonic() + 60
    while not any(p.name.startswith("step-") and (p / "upper" / "f").exists() for p in tmp.iterdir()):
        assert time.monotonic() < deadline and build.poll() is None, "the RUN step never started"
        time.sleep(0.05)
    ours = tmp / f"blob-{os.getpid()}-keep"  # a live process's temp file stays
    ours.write_bytes(b"x")
    build.send_signal(signal.SIGKILL)
    build.wait()
    assert any(p.name.startswith("step-") for p in tmp.iterdir())
    pybuild("images", env=env)
    assert sorted(p.name for p in tmp.iterdir()) == [ours.name]


# --- 10. registry deadlines ------------------------------------------------------------------------

def test_a_registry_that_never_answers_hits_the_deadline(store: dict[str, str]) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections (the kernel does), never answers
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        started = time.monotonic()
        proc = pybuild("pull", "--timeout", "2", f"{host}/x:1", env=store, check=False)
        took = time.monotonic() - started
        _clean_failure(proc, f"{host}: GET /v2/: no answer within the 2 s deadline", "--timeout")
        assert took < 20
        proc = pybuild("pull", f"{host}/x:1", env={**store, "PYBUILD_REGISTRY_TIMEOUT": "1.5"}, check=False)
        _clean_failure(proc, "no answer within the 1.5 s deadline")
        bad = pybuild("pull", f"{host}/x:1", env={**store, "PYBUILD_REGISTRY_TIMEOUT": "soon"}, check=False)
        _clean_failure(bad, "bad registry setting")
    finally:
        silent.close()


@needs_registry
def test_a_blob_that_stalls_hits_its_deadline(store: dict[str, str], registry: Registry,
                                              fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A registry that sends half a layer and then nothing: the pull gives up at the blob's deadline
    (--timeout plus 1 s per MiB; the config, 299 bytes, stalls first), retries included, and names it."""
    repo = f"{registry.host}/stall/busybox"
    pybuild("push", "--from", "busybox", f"{repo}:1", env=store)
    fault_proxy.add(r"GET /v2/stall/busybox/blobs/sha256:", "stall", times=100)
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh")}
    started = time.monotonic()
    proc = pybuild("pull", "--timeout", "2", f"{fault_proxy.host}/stall/busybox:1", env=fresh, check=False)
    took = time.monotonic() - started
    _clean_failure(proc, fault_proxy.host, "stall/busybox@sha256:", "not downloaded within its 2 s deadline")
    assert took < 15, took  # the proxy would stall each try for 30 s
    assert not list((tmp_path / "fresh" / "tmp").iterdir())


# --- 11. sparse files ------------------------------------------------------------------------------

@requires_tool("tar")
def test_sparse_files_are_written_as_holes(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nADD sparse.tar /s/\nRUN du -k /s/big > /du && stat -c %s /s/big >> /du\n")
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(256 << 20)
        f.seek(128 << 20)
        f.write(b"data")
    subprocess.run(["tar", "--sparse", "-cf", str(ctx / "sparse.tar"), "-C", str(tmp_path), "big"], check=True)
    assert (ctx / "sparse.tar").stat().st_size < 1 << 20  # a GNU sparse entry
    out = tmp_path / "out"
    pybuild("build", "-o", f"type=local,dest={out}", str(ctx), env=store)
    du, size = (out / "du").read_text().split("\n")[:2]
    assert int(size) == 256 << 20 and int(du.split()[0]) < 1024, (du, size)  # KiB on disk, not 256 MiB
    assert os.stat(out / "s" / "big").st_blocks * 512 < 1 << 20  # the local export keeps the holes too


# --- 12. sockets in the context --------------------------------------------------------------------

def test_a_socket_in_the_context_is_named_in_a_warning(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY sock1 /x\nCOPY . /all/\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ctx / "sock1"))
    try:
        proc = pybuild("build", "--progress=plain", str(ctx), env=store)
        # -q prints the image id only, as BuildKit's -q does (docker 20.10.24 with a socket in the context: no
        # warning in any mode; it copies the socket as an empty file, where pybuild skips it and warns)
        quiet = pybuild("build", "-q", str(ctx), env=store)
    finally:
        sock.close()
    assert quiet.stderr == "" and quiet.stdout.startswith("sha256:") and len(quiet.stdout.split()) == 1
    assert "WARNING: Dockerfile:2: COPY/ADD skipped sock1: a socket cannot be copied" in proc.stderr
    assert "WARNING: Dockerfile:3: COPY/ADD skipped sock1: a socket cannot be copied" in proc.stderr


def test_sparse_writer_round_trips_any_chunking(tmp_path: Path) -> None:
    import random

    from builder.util.sparse import BLOCK, SparseWriter

    rng = random.Random(12)
    for trial in range(40):
        data = bytearray(rng.randrange(0, 4 * BLOCK * 8))
        for _ in range(rng.randrange(0, 4)):
            a = rng.randrange(0, len(data) + 1)
            b = min(len(data), a + rng.randrange(0, 3 * BLOCK))
            data[a:b] = rng.randbytes(b - a)
        path = tmp_path / f"f{trial}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        try:
            w, i = SparseWriter(fd), 0
            while i < len(data):
                n = rng.randrange(1, 3 * BLOCK)
                w.write(bytes(data[i:i + n]))
                i += n
            w.close()
        finally:
            os.close(fd)
        assert path.read_bytes() == bytes(data), trial


# --- 8 on pull: a registry's manifest whose descriptors lie about sizes ---------------------------

def _registry_json(url: str, method: str = "GET", body: bytes | None = None,
                   media_type: str | None = None) -> tuple[bytes, str]:
    import urllib.request

    accept = ("application/vnd.oci.image.manifest.v1+json,"
              "application/vnd.docker.distribution.manifest.v2+json")
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": media_type} if media_type else {"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the test's own 127.0.0.1 registry
        return resp.read(), resp.headers.get("Content-Type", "")


@needs_registry
def test_a_pulled_descriptor_with_a_false_size_is_refused(store: dict[str, str], registry: Registry,
                                                          tmp_path: Path) -> None:
    """A manifest in a real registry whose layer or config descriptor claims a size bigger or smaller
    than the blob (the registry accepts such a manifest): the pull fails naming the registry and the
    reference, and stores nothing (no image, no tag, no config, no partial blob)."""
    repo = f"{registry.host}/sizes/busybox"
    pybuild("push", "--from", "busybox", f"{repo}:good", env=store)
    raw, media_type = _registry_json(f"http://{registry.host}/v2/sizes/busybox/manifests/good")
    root = tmp_path / "fresh"
    fresh = {"PYBUILD_ROOT": str(root)}
    for field in ("layers", "config"):
        for delta in (+100, -100):
            bad = json.loads(raw)
            desc = bad[field][0] if field == "layers" else bad[field]
            real = desc["size"]
            desc["size"] = real + delta
            tag = f"bad-{field}-{'big' if delta > 0 else 'small'}"
            _registry_json(f"http://{registry.host}/v2/sizes/busybox/manifests/{tag}", "PUT",
                           json.dumps(bad).encode(), media_type)
            proc = pybuild("pull", f"{repo}:{tag}", env=fresh, check=False)
            _clean_failure(proc, f"{repo}:{tag}", f"is {real} bytes, its descriptor says {real + delta}",
                           "nothing was stored")
            assert pybuild("images", "-q", env=fresh).stdout == ""
            assert not list((root / "blobs" / "sha256").iterdir()) and not list((root / "tmp").iterdir()), tag
    assert pybuild("pull", f"{repo}:good", env=fresh).returncode == 0  # the same blobs, described right
    # with the config already stored (not fetched again), its descriptor's size is still checked
    _clean_failure(pybuild("pull", f"{repo}:bad-config-small", env=fresh, check=False),
                   f"{repo}:bad-config-small: the config sha256:", "its descriptor says")
