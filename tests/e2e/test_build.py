"""`pybuild build` end to end: every fixtures/builds/<case> is built, its config and rootfs checked.

Each case directory holds a Dockerfile, its context and `expect.json`:
    {"config": {Key: value, ...}, "files": {path: {"content", "mode", "uid", "gid", "type"}},
     "absent": [path, ...], "build_args": {...}, "target": "...", "secrets": {id: value},
     "history": [created_by, ...] (optional)}
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, pybuild, requires_root
from tests.e2e.conftest import cached, step_no

CASES = sorted(p.name for p in (FIXTURES / "builds").iterdir() if (p / "expect.json").exists())
pytestmark = requires_root



def build_case(case: str, env: dict[str, str], tmp: Path, *extra: str) -> tuple[dict[str, Any], Path, Any]:
    expect = json.loads((FIXTURES / "builds" / case / "expect.json").read_text())
    args = ["build", "-t", f"case-{case}:test", "--progress=plain", "-o", f"type=local,dest={tmp / 'rootfs'}"]
    args += ["-o", "type=image"]
    for k, v in expect.get("build_args", {}).items():
        args += ["--build-arg", f"{k}={v}"]
    if expect.get("target"):
        args += ["--target", expect["target"]]
    for sid, value in expect.get("secrets", {}).items():
        (tmp / sid).write_text(value)
        args += ["--secret", f"id={sid},src={tmp / sid}"]
    proc = pybuild(*args, *extra, str(FIXTURES / "builds" / case), env=env)
    return expect, tmp / "rootfs", proc


def image_config(env: dict[str, str], ref: str) -> dict[str, Any]:
    from builder.store import Store

    return json.loads(Store.open(env["PYBUILD_ROOT"]).resolve(ref).raw_config())


def check_rootfs(rootfs: Path, expect: dict[str, Any]) -> None:
    for rel, want in expect["files"].items():
        path = rootfs / rel
        st = os.lstat(path)
        if "content" in want:
            assert path.read_text() == want["content"], rel
        if "mode" in want:
            assert oct(stat.S_IMODE(st.st_mode)) == oct(int(want["mode"], 8)), rel
        if "uid" in want:
            assert (st.st_uid, st.st_gid) == (want["uid"], want["gid"]), rel
        if want.get("type") == "dir":
            assert stat.S_ISDIR(st.st_mode), rel
        if want.get("type") == "file":
            assert stat.S_ISREG(st.st_mode), rel
        if want.get("type") == "fifo":
            assert stat.S_ISFIFO(st.st_mode), rel
        if want.get("type") == "symlink":
            assert stat.S_ISLNK(st.st_mode), rel
    for rel in expect["absent"]:
        assert not os.path.lexists(rootfs / rel), f"{rel} should not exist"


@pytest.mark.parametrize("case", CASES)
def test_fixture_builds_to_the_expected_image(case: str, store: dict[str, str], tmp_path: Path) -> None:
    expect, rootfs, proc = build_case(case, store, tmp_path)
    cfg = image_config(store, f"case-{case}:test")
    for key, value in expect["config"].items():
        assert cfg["config"].get(key) == value, key
    check_rootfs(rootfs, expect)
    assert len(cfg["rootfs"]["diff_ids"]) == len([h for h in cfg["history"] if not h.get("empty_layer")])
    if "history" in expect:  # created_by of this Dockerfile's own steps, as BuildKit records them
        assert [h["created_by"] for h in cfg["history"] if h.get("comment") == "buildkit.dockerfile.v0"] \
            == expect["history"]
    assert "Traceback" not in proc.stderr


def test_tomcat_example_config_history_and_cached_rebuild(store: dict[str, str], tmp_path: Path) -> None:
    ctx = FIXTURES / "examples" / "tomcat"
    first = pybuild("build", "-t", "tomcat:alpine", "--progress=plain", str(ctx), env=store)
    assert step_no(first.stderr, "[3/3] COPY index.html webapps/ROOT/index.html") > 3  # after the [internal] loads
    cfg = image_config(store, "tomcat:alpine")
    assert cfg["config"]["WorkingDir"] == "/usr/local/tomcat"
    assert cfg["config"]["ExposedPorts"] == {"8080/tcp": {}}
    ours = [h for h in cfg["history"] if h.get("comment") == "buildkit.dockerfile.v0"]
    assert [h["created_by"] for h in ours] == [
        "ENV CATALINA_HOME=/usr/local/tomcat", "WORKDIR /usr/local/tomcat",
        "COPY index.html webapps/ROOT/index.html # buildkit", "EXPOSE [8080/tcp]",
        'CMD ["httpd" "-f" "-v" "-p" "8080" "-h" "/usr/local/tomcat/webapps/ROOT"]']
    assert [h.get("empty_layer", False) for h in ours] == [True, False, False, True, True]
    again = pybuild("build", "-q", "-t", "tomcat:alpine", str(ctx), env=store)
    from builder.store import Store

    assert again.stdout.strip() == Store.open(store["PYBUILD_ROOT"]).resolve("tomcat:alpine").id
    second = pybuild("build", "-t", "tomcat:alpine", "--progress=plain", str(ctx), env=store)
    assert second.stderr.count("CACHED") == 2
    assert image_config(store, "tomcat:alpine") == cfg  # a cached rebuild gives the same image


def test_changed_context_file_reruns_only_the_steps_after_it(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b\n")
    (ctx / "a.txt").write_text("v1\n")
    pybuild("build", "-t", "edit:1", str(ctx), env=store)
    (ctx / "a.txt").write_text("v2\n")
    out = pybuild("build", "-t", "edit:1", "--progress=plain", "-o", f"type=local,dest={tmp_path / 'fs'}",
                  "-o", "type=image", str(ctx), env=store).stderr
    assert cached(out, "RUN echo one") and not cached(out, "COPY a.txt") and not cached(out, "RUN cat /a.txt")
    assert (tmp_path / "fs" / "b").read_text() == "v2\n"


def test_copy_from_is_keyed_on_the_copied_content(store: dict[str, str], tmp_path: Path) -> None:
    """Rebuilding the source stage with a change elsewhere keeps the COPY --from step cached."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox AS src\nARG NOISE\nRUN echo same > /keep && echo $NOISE > /noise\n"
                                    "FROM busybox\nCOPY --from=src /keep /keep\n")
    pybuild("build", "--build-arg", "NOISE=1", "-t", "from:1", str(ctx), env=store)
    out = pybuild("build", "--build-arg", "NOISE=2", "-t", "from:1", "--progress=plain", str(ctx), env=store).stderr
    assert not cached(out, "[src 2/2] RUN")  # the source stage re-ran ...
    assert cached(out, "COPY --from=src /keep /keep")  # ... but what COPY --from takes did not change


def test_build_record_is_written(store: dict[str, str]) -> None:
    from builder.build.records import list_records, load

    pybuild("build", "-t", "rec:1", str(FIXTURES / "examples" / "tomcat"), env=store)
    rec = load(list_records(store["PYBUILD_ROOT"])[-1])
    assert rec["status"] == "ok" and rec["tags"] == ["rec:1"] and rec["image_id"].startswith("sha256:")
    kinds = [s["kind"] for s in rec["steps"]]
    assert kinds == ["FROM", "WORKDIR", "COPY"]
    assert all(s["key"].startswith("sha256:") and s["key_parts"] for s in rec["steps"])
    assert rec["dockerfile"] == str(FIXTURES / "examples" / "tomcat" / "Dockerfile")


def test_build_record_names_a_relative_f_file_by_its_absolute_path(store: dict[str, str], tmp_path: Path) -> None:
    from builder.build.records import list_records, load

    (tmp_path / "ctx").mkdir()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "app.Dockerfile").write_text("FROM busybox\nENV A=1\n")
    pybuild("build", "-f", "files/app.Dockerfile", "ctx", env=store, cwd=tmp_path)  # -f is relative to the cwd
    rec = load(list_records(store["PYBUILD_ROOT"])[-1])
    assert rec["dockerfile"] == str(tmp_path / "files" / "app.Dockerfile") and rec["context"] == str(tmp_path / "ctx")


def test_secret_value_reaches_no_layer_key_record_or_log(store: dict[str, str], tmp_path: Path) -> None:
    root = Path(store["PYBUILD_ROOT"])
    expect, rootfs, proc = build_case("run-mounts", store, tmp_path)
    secret = expect["secrets"]["token"].encode()
    assert secret not in (proc.stdout + proc.stderr).encode()
    for sub in ("cache", "builds", "blobs", "layers"):
        for path in (root / sub).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                if path.parent.name == "sha256" and data[:2] == b"\x1f\x8b":
                    import gzip

                    data = gzip.decompress(data)
                assert secret not in data, path


def test_cache_mount_persists_across_builds(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    df = "FROM busybox\nRUN --mount=type=cache,target=/c,id=persist-test n=$(cat /c/n 2>/dev/null || echo 0); " \
         "echo $((n+1)) > /c/n; cp /c/n /seen\n"
    (ctx / "Dockerfile").write_text(df)
    pybuild("build", "-t", "cm:1", str(ctx), env=store)
    pybuild("build", "--no-cache", "-t", "cm:1", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    assert (tmp_path / "fs" / "seen").read_text() == "2\n"


@pytest.mark.parametrize("dockerfile, files, args, message", [
    ("FROM busybox\nCOPY missing.txt /x\n", {}, [], "Dockerfile:2:1: COPY/ADD source 'missing.txt': not found"),
    ("FROM busybox\nCOPY --chown=nosuchuser a /a\n", {"a": "x"}, [], "Dockerfile:2:1: unable to find user nosuchuser"),
    ("FROM busybox\nCOPY --from=nostage /x /x\n", {}, [],
     "Dockerfile:2:1: --from=nostage: no stage of this Dockerfile has that name"),
    ("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n", {}, [],
     "Dockerfile:2:1: stage 'b' refers to a later stage (a cycle between stages)"),
    ("FROM busybox\n", {}, ["--build-arg", "=oops"], "invalid --build-arg"),
    ("FROM busybox\nRUN echo before-failing && exit 3\n", {}, [], "exit code: 3"),
    ("FROM busybox\nRUNN true\n", {}, [], "Dockerfile:2"),
    ("FROM nosuchimage:1\n", {}, [], "nosuchimage"),
    ("FROM busybox\n", {}, ["--target", "nope"], "target stage 'nope'"),
    ("FROM busybox\nWORKDIR /etc/passwd/sub\n", {}, [], "Dockerfile:2:1: mkdir /etc/passwd: not a directory"),
])
def test_bad_input_is_a_located_error_and_leaves_the_store_unchanged(
        store: dict[str, str], tmp_path: Path, dockerfile: str, files: dict[str, str], args: list[str],
        message: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    root = Path(store["PYBUILD_ROOT"])
    before = (root / "images.json").read_bytes()
    proc = pybuild("build", "-t", "bad:1", "--progress=plain", *args, str(ctx), env=store, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (root / "images.json").read_bytes() == before
    if "exit code" in message:
        assert "before-failing" in proc.stderr  # the last output lines of the failing step


def test_missing_context_is_a_clear_error(store: dict[str, str], tmp_path: Path) -> None:
    proc = pybuild("build", "-t", "bad:2", str(tmp_path / "nope"), env=store, check=False)
    assert proc.returncode != 0 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_source_date_epoch_builds_are_reproducible(busybox_tar: Path, tmp_path: Path) -> None:
    digests = []
    for n in (1, 2):
        env = {"PYBUILD_ROOT": str(tmp_path / f"store{n}"), "SOURCE_DATE_EPOCH": "1700000000"}
        pybuild("import", str(busybox_tar), "busybox:latest", env=env)
        out = pybuild("build", "-q", "-t", "repro:1", str(FIXTURES / "builds" / "basic"), env=env).stdout
        digests.append(out.strip())
    assert digests[0] == digests[1] and digests[0].startswith("sha256:")


def test_noop_rebuild_shortcut_notices_every_changed_input(store: dict[str, str], tmp_path: Path) -> None:
    """The memoised no-op path must fall back to a real build when any input changed."""
    from builder.store import Store

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("v1\n")
    first = pybuild("build", "-q", "-t", "memo:1", str(ctx), env=store).stdout.strip()
    assert pybuild("build", "-q", "-t", "memo:1", str(ctx), env=store).stdout.strip() == first
    (ctx / "a.txt").write_text("v2\n")  # a changed context file
    second = pybuild("build", "-q", "-t", "memo:1", str(ctx), env=store).stdout.strip()
    assert second != first
    pybuild("build", "-q", "-t", "memo:1", "--build-arg", "X=1", str(ctx), env=store)  # other options: own memo
    store_ = Store.open(store["PYBUILD_ROOT"])
    store_.tag("memo:1", first)  # the tag moved away from the memoised result
    assert pybuild("build", "-q", "-t", "memo:1", str(ctx), env=store).stdout.strip() == second
    assert store_.resolve("memo:1").id == second
    (ctx / ".dockerignore").write_text("a.txt\n")  # a changed .dockerignore
    proc = pybuild("build", "-q", "-t", "memo:1", str(ctx), env=store, check=False)
    assert proc.returncode != 0 and "a.txt" in proc.stderr


def test_add_url_with_checksum_from_a_local_server(store: dict[str, str], tmp_path: Path) -> None:
    import hashlib
    import http.server
    import threading

    served = tmp_path / "www"
    served.mkdir()
    (served / "file.txt").write_text("remote\n")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/file.txt"
        good = "sha256:" + hashlib.sha256(b"remote\n").hexdigest()
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={good} {url} /dl/\n")
        pybuild("build", "-t", "url:1", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
        assert (tmp_path / "fs" / "dl" / "file.txt").read_text() == "remote\n"
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {url} /nosum/\n")  # no --checksum: keyed on content
        pybuild("build", "-t", "url:3", str(ctx), env=store)
        (served / "file.txt").write_text("changed on the server\n")
        pybuild("build", "-t", "url:3", "-o", f"type=local,dest={tmp_path / 'fs3'}", "-o", "type=image",
                str(ctx), env=store)
        assert (tmp_path / "fs3" / "nosum" / "file.txt").read_text() == "changed on the server\n"
        again = pybuild("build", "-t", "url:3", "--progress=plain", str(ctx), env=store).stderr
        assert cached(again, "[2/2] ADD")  # unchanged remote content: a hit
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /dl/\n")
        proc = pybuild("build", "-t", "url:2", str(ctx), env=store, check=False)
        assert proc.returncode != 0 and "Dockerfile:2" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        server.shutdown()


def test_workdir_is_created_owned_by_the_user_and_no_cache_filter(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox AS a\nRUN echo a > /a\nFROM busybox\nUSER www-data\n"
                                    "WORKDIR /home/app\nCOPY --from=a /a /a\n")
    pybuild("build", "-t", "wd:1", str(ctx), env=store)
    out = pybuild("build", "-t", "wd:1", "--progress=plain", "--no-cache-filter", "a",
                  "-o", f"type=local,dest={tmp_path / 'fs'}", "-o", "type=image", str(ctx), env=store).stderr
    assert not cached(out, "RUN echo a > /a") and cached(out, "WORKDIR /home/app")  # stage a re-ran, the final stage's steps did not
    st = os.stat(tmp_path / "fs" / "home" / "app")
    assert (st.st_uid, st.st_gid) == (33, 33)


def test_workdir_of_a_user_missing_from_passwd_is_made_by_root(store: dict[str, str], tmp_path: Path) -> None:
    """BuildKit's mkdir treats a USER that /etc/passwd lacks as root (only RUN needs it to exist)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nUSER nosuchuser\nWORKDIR /w\nUSER www-data:nosuchgroup\n"
                                    "WORKDIR /v\n")
    pybuild("build", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    assert [(st.st_uid, st.st_gid) for st in (os.stat(tmp_path / "fs" / d) for d in ("w", "v"))] == [(0, 0), (33, 33)]


def test_ctrl_c_cancels_cleanly(store: dict[str, str], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    token = f"60.{os.getpid()}{int(time.time()) % 100000}"  # a sleep no other process runs
    # st''arted: the step's header line shows the command as written, so only its output matches
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN echo st''arted && sleep {token}\n")
    proc = subprocess.Popen([sys.executable, "-m", "builder", "build", "--progress=plain", "-t", "int:1", str(ctx)],
                            env={**os.environ, **store}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:  # a thread: a build that stalls silently must fail the test, not hang it
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "started" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(60), "".join(lines)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    err = "".join(lines)
    assert proc.returncode == 130 and "Traceback" not in err, err
    out = subprocess.run(["pgrep", "-f", f"sleep {token}"], capture_output=True, text=True).stdout
    assert out.strip() == ""
    assert not [p for p in (Path(store["PYBUILD_ROOT"]) / "tmp").iterdir() if p.name.startswith("step-")], err
    with open("/proc/self/mountinfo") as f:
        assert store["PYBUILD_ROOT"] not in f.read()


def test_push_to_a_local_registry(store: dict[str, str], tmp_path: Path) -> None:
    import subprocess

    from tests.builder.registry_server import needs_registry, start_registry

    if needs_registry.args[0]:
        pytest.skip(needs_registry.kwargs["reason"])
    reg = start_registry(tmp_path / "registry")
    try:
        ref = f"{reg.host}/pushed/tomcat:1"
        out = pybuild("build", "-q", "-t", ref, "--push", str(FIXTURES / "examples" / "tomcat"), env=store)
        image_id = out.stdout.strip()
        raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
                             capture_output=True, text=True, check=True).stdout
        pushed = json.loads(raw)
        assert pushed["config"]["digest"] == image_id
        # layers are kept uncompressed locally and pushed as gzip: same image id, another manifest
        from builder.store import Store

        local = Store.open(store["PYBUILD_ROOT"]).resolve(ref)
        assert local.layers()[-1].media_type == "application/vnd.oci.image.layer.v1.tar"
        assert {l["mediaType"] for l in pushed["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
        assert [l["digest"] for l in pushed["layers"]] != [l.digest for l in local.layers()]
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                        f"oci:{tmp_path / 'copy'}:x"], check=True)  # skopeo checks every blob's digest
        for layer, diff_id in zip(pushed["layers"], local.config().diff_ids):
            data = gzip.decompress((tmp_path / "copy" / "blobs" / "sha256" / layer["digest"][7:]).read_bytes())
            assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
    finally:
        reg.stop()


def test_cache_to_and_from_a_local_directory_gives_hits_in_a_fresh_store(busybox_tar: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo expensive > /x\n")
    cache_dir = tmp_path / "exported"
    envs = []
    for n in (1, 2):  # two machines with the same base image (an import is reproducible with an epoch)
        env = {"PYBUILD_ROOT": str(tmp_path / f"store{n}")}
        pybuild("import", str(busybox_tar), "busybox:latest", env={**env, "SOURCE_DATE_EPOCH": "1700000000"})
        envs.append(env)
    pybuild("build", "-t", "c:1", "--cache-to", f"type=local,dest={cache_dir},mode=max", str(ctx), env=envs[0])
    out = pybuild("build", "-t", "c:1", "--progress=plain", "--cache-from", f"type=local,src={cache_dir}",
                  str(ctx), env=envs[1]).stderr
    assert cached(out, "RUN echo expensive")
    proc = pybuild("build", "--cache-to", "type=bogus", str(ctx), env=envs[1], check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_output_compression_chooses_the_layer_codec(store: dict[str, str], tmp_path: Path) -> None:
    from builder.store import Store

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo zstd > /z\n")
    pybuild("build", "-t", "zs:1", "-o", "type=image,compression=zstd", str(ctx), env=store)
    layers = Store.open(store["PYBUILD_ROOT"]).resolve("zs:1").manifest().layers
    assert layers[-1].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    proc = pybuild("build", "-o", "type=image,compression=lzma", str(ctx), env=store, check=False)
    assert proc.returncode != 0 and "unknown compression" in proc.stderr


def test_oci_output_gets_gzip_layers_that_umoci_unpacks(store: dict[str, str], tmp_path: Path) -> None:
    import subprocess

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo packed > /p\n")
    archive, meta = tmp_path / "img.tar", tmp_path / "meta.json"
    pybuild("build", "-q", "-t", "packed:1", "-o", f"type=oci,dest={archive}", "--metadata-file", str(meta),
            str(ctx), env=store)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], capture_output=True,
                         check=True).stdout
    assert {l["mediaType"] for l in json.loads(raw)["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert json.loads(meta.read_text())["containerimage.digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{archive}", f"oci:{tmp_path / 'layout'}:x"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'layout'}:x", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    assert (tmp_path / "bundle" / "rootfs" / "p").read_text() == "packed\n"


def test_a_stage_starts_as_soon_as_its_own_dependencies_are_done(store: dict[str, str], tmp_path: Path) -> None:
    """c needs only a; b waits (through a shared cache mount) for c's RUN: it passes only if c runs
    while b is still running, whatever the machine's load (no timing involved)."""
    import uuid

    token = uuid.uuid4().hex
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    sync = f"--mount=type=cache,id=sync-{token},target=/sync,sharing=shared"
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS a\nRUN echo a > /a\n"
        f"FROM busybox AS b\nRUN {sync} i=0; while [ ! -e /sync/c ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;"
        " test -e /sync/c && echo b > /b\n"
        f"FROM busybox AS c\nCOPY --from=a /a /a\nRUN {sync} touch /sync/c && echo c > /c\n"
        "FROM busybox\nCOPY --from=b /b /b\nCOPY --from=c /c /c\n")
    proc = pybuild("build", "--jobs", "2", "--progress=plain", "-o", f"type=local,dest={tmp_path / 'out'}", str(ctx),
                   env=store, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "b").read_text() == "b\n" and (tmp_path / "out" / "c").read_text() == "c\n"


def test_run_network_modes(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --network=none ip -o link | wc -l > /none\n"
                                    "RUN ip -o link | wc -l > /default\n")
    pybuild("build", "-t", "net:1", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    assert (tmp_path / "fs" / "none").read_text().strip() == "1"  # loopback only
    assert int((tmp_path / "fs" / "default").read_text()) > 1  # outbound network, as BuildKit gives a RUN
    out = pybuild("build", "-t", "net:2", "--network", "none", "-o", f"type=local,dest={tmp_path / 'fs2'}",
                  str(ctx), env=store)
    assert out.returncode == 0 and (tmp_path / "fs2" / "default").read_text().strip() == "1"


def test_add_host_lines_follow_the_sandbox_hosts_and_key_the_run(store: dict[str, str], tmp_path: Path) -> None:
    """`--add-host` lines come after BuildKit's sandbox lines; they are part of the RUN's key, as in
    BuildKit's ExecOp (another host list reruns the RUN, the same one hits the cache)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN cat /etc/hosts > /hosts\n")
    args = ["--add-host", "db:10.1.2.3", "--add-host", "v6=fd00::5", "--progress=plain"]
    out = pybuild("build", *args, "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    lines = (tmp_path / "fs" / "hosts").read_text().splitlines()
    assert lines[:2] == ["127.0.0.1\tlocalhost buildkitsandbox", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert lines[-2:] == ["10.1.2.3\tdb", "fd00::5\tv6"], out.stderr  # after the sandbox's own address line
    again = pybuild("build", *args, "-o", f"type=local,dest={tmp_path / 'fs2'}", str(ctx), env=store).stderr
    assert cached(again, "RUN cat /etc/hosts"), again
    other = pybuild("build", "--add-host", "db:10.9.9.9", "--progress=plain", "-o",
                    f"type=local,dest={tmp_path / 'fs3'}", str(ctx), env=store).stderr
    assert not cached(other, "RUN cat /etc/hosts") and "10.9.9.9\tdb" in (tmp_path / "fs3" / "hosts").read_text()


@pytest.mark.parametrize("flag, message", [
    (["--add-host", "db"], "invalid --add-host 'db': expected NAME:IP"),
    (["--add-host", "db:10.1.2"], "invalid IP address '10.1.2'"),
    (["--add-host", "gw:host-gateway"], "host-gateway is not supported"),
    (["--shm-size", "lots"], "invalid --shm-size 'lots'"),
    (["--shm-size", "0"], "invalid --shm-size '0'"),
])
def test_bad_add_host_or_shm_size_is_a_clear_error(store: dict[str, str], tmp_path: Path, flag: list[str],
                                                    message: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    proc = pybuild("build", *flag, str(tmp_path), env=store, check=False)
    assert proc.returncode != 0 and proc.returncode != 70 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_shm_size_sizes_the_run_steps_dev_shm(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN grep ' /dev/shm ' /proc/mounts > /shm\n")
    pybuild("build", "-o", f"type=local,dest={tmp_path / 'a'}", str(tmp_path), env=store)
    assert "size=65536k" in (tmp_path / "a" / "shm").read_text()  # Docker's default
    pybuild("build", "--shm-size", "128m", "-o", f"type=local,dest={tmp_path / 'b'}", str(tmp_path), env=store)
    assert "size=131072k" in (tmp_path / "b" / "shm").read_text()


def test_exported_cache_serves_a_store_whose_base_came_from_a_save(store: dict[str, str], tmp_path: Path) -> None:
    """A base image keys the cache by its config (image id), not its manifest: `import` stores layers
    uncompressed and `save` compresses them, so the same base has another manifest after save/load."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nRUN echo hi > /x\nCOPY f /f\nRUN cat /f\n")
    (ctx / "f").write_text("f\n")
    cache = tmp_path / "cache"
    pybuild("build", "-q", "--cache-to", f"type=local,dest={cache},mode=max", str(ctx), env=store)
    pybuild("save", "-o", str(tmp_path / "base.tar"), "busybox:latest", env=store)
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh")}
    pybuild("load", "-i", str(tmp_path / "base.tar"), env=fresh)
    out = pybuild("build", "--progress", "plain", "--cache-from", f"type=local,src={cache}", str(ctx), env=fresh).stderr
    assert out.count("CACHED") == 3, out


def test_a_relative_store_root_works(busybox_tar: Path, tmp_path: Path) -> None:
    """PYBUILD_ROOT=store (relative) is the directory under the cwd, also in the RUN's overlay mount."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox:latest\nRUN echo ok > /ok\n")
    env = {"PYBUILD_ROOT": "store"}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env, cwd=tmp_path)
    pybuild("build", "-q", "-t", "rel:1", "ctx", env=env, cwd=tmp_path)
    assert (tmp_path / "store").is_dir()
    assert pybuild("run", "--rm", "rel:1", "cat", "/ok", env=env, cwd=tmp_path).stdout == "ok\n"
