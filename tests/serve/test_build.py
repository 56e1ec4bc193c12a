"""`POST /build` through the real `docker build` (DOCKER_BUILDKIT=0, the legacy builder's API) and
raw requests: every flag, streamed output, the image id, failures with dockerd's exit codes, bad
contexts answered 400, a disconnect that cancels the build, and a store shared with the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from tests.builder.registry_server import Registry
from tests.conftest import requires_root
from tests.serve.conftest import Server, context_tar, json_lines, needs_docker, write_context

pytestmark = [needs_docker, requires_root]

MULTI = """\
FROM busybox AS base
ARG V=1
RUN echo hello $V > /hello && cat /hello
FROM base AS final
COPY data.txt /data.txt
RUN cat /data.txt
FROM final AS never
RUN echo this stage is never built && exit 9
"""


def test_build_with_flags(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"sub/Dockerfile.custom": MULTI, "data.txt": "some data\n"})
    proc = server.docker("build", "-t", "flags:1", "-t", "flags:2", "--build-arg", "V=7", "--label", "l=v",
                         "--target", "final", "--no-cache", "--network", "none", "--platform", "linux/amd64",
                         "--shm-size", "64m", "-f", str(ctx / "sub/Dockerfile.custom"), str(ctx))
    out = proc.stdout
    assert "hello 7" in out and "some data" in out and "never built" not in out
    assert "Step" in out and "Successfully built " in out
    assert "Successfully tagged flags:1" in out and "Successfully tagged flags:2" in out
    inspect = json.loads(server.docker("inspect", "flags:1").stdout)[0]
    assert inspect["Config"]["Labels"]["l"] == "v" and inspect["Architecture"] == "amd64"
    assert inspect["Id"].startswith("sha256:" + out.split("Successfully built ")[1][:12])
    listed = server.pybuild("images").stdout  # the CLI reads the same store
    assert "flags " in listed and " 1 " in listed and " 2 " in listed


def test_add_host_and_shm_size_reach_the_run_steps(server: Server, tmp_path: Path) -> None:
    run = "RUN cat /etc/hosts; grep ' /dev/shm ' /proc/mounts"
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\n{run}\n"})
    out = server.docker("build", "--add-host", "db:10.1.2.3", "--add-host", "cache:10.1.2.4", "--shm-size", "96m",
                        str(ctx)).stdout
    assert "10.1.2.3\tdb\n10.1.2.4\tcache" in out and "size=98304k" in out, out
    plain = server.docker("build", str(ctx)).stdout  # neither: another RUN key, the default /dev/shm, no extra lines
    assert "Using cache" not in plain and "\tdb" not in plain and "size=65536k" in plain, plain


def test_quiet_iidfile_and_cache(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo cached-step > /c\n"})
    first = server.docker("build", "-t", "quiet:1", str(ctx)).stdout
    assert "Using cache" not in first
    iid = tmp_path / "iid"
    proc = server.docker("build", "-q", "--iidfile", str(iid), "-t", "quiet:1", str(ctx))
    image_id = proc.stdout.strip()
    assert image_id.startswith("sha256:") and iid.read_text().strip() == image_id  # -q: the streamed id, as with dockerd
    assert json.loads(server.docker("inspect", "quiet:1").stdout)[0]["Id"] == image_id
    again = server.docker("build", str(ctx)).stdout
    assert "Using cache" in again and f"Successfully built {image_id[7:19]}" in again


def test_failures_exit_as_with_dockerd(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "fail", {"Dockerfile": "FROM busybox\nRUN echo before; exit 3\n"})
    proc = server.docker("build", "-t", "fails:1", str(ctx), check=False)
    assert proc.returncode == 3, proc.stderr  # the RUN's exit code, as the legacy builder reports it
    assert "before" in proc.stdout and "exit" in proc.stderr
    bad = write_context(tmp_path / "bad", {"Dockerfile": "FROM busybox\nNOPE x\n"})
    proc = server.docker("build", str(bad), check=False)
    assert proc.returncode == 1 and "NOPE" in proc.stderr.upper()
    proc = server.docker("build", "--add-host", "gw:host-gateway", str(ctx), check=False)
    assert proc.returncode == 1 and "host-gateway is not supported" in proc.stderr
    assert "fails:1" not in server.pybuild("images").stdout
    assert server.alive()


def test_gzip_context_and_stream_shape(server: Server) -> None:
    body = context_tar({"df/Build": "FROM busybox\nARG X\nRUN echo got-$X\n"}, compress="gz")
    status, headers, data = server.api(
        "POST", "/v1.41/build?dockerfile=df/Build&t=gz:1&buildargs=" + quote(json.dumps({"X": "gzip"})), body,
        {"Content-Type": "application/x-tar"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    lines = json_lines(data)
    assert any("got-gzip" in m.get("stream", "") for m in lines)
    aux = [m["aux"]["ID"] for m in lines if "aux" in m]
    assert len(aux) == 1 and aux[0] == json.loads(server.api("GET", "/images/gz:1/json")[2])["Id"]
    kept = server.root / "tmp" / "serve-contexts" / hashlib.sha256(body).hexdigest()
    assert (kept / "df" / "Build").is_file()  # the same tar again reuses this directory (the no-op memo sees it)
    again = json_lines(server.api("POST", "/build?dockerfile=df/Build&t=gz:1&buildargs=" + quote(json.dumps({"X": "gzip"})),
                                  body)[2])
    assert [m["aux"]["ID"] for m in again if "aux" in m] == aux and not any("got-gzip" in m.get("stream", "") for m in again)


def _special_tar(name: str, kind: bytes, target: str, then: str = "", big: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member, data in (("Dockerfile", b"FROM busybox\n"), ("big", b"y" * big)):
            if data:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        special = tarfile.TarInfo(name)
        special.type, special.linkname = kind, target
        tar.addfile(special)
        if then:
            info = tarfile.TarInfo(then)  # would be written through the link, outside the context
            info.size = 2
            tar.addfile(info, io.BytesIO(b"x\n"))
    return buf.getvalue()


def test_bad_build_requests(server: Server) -> None:
    good = context_tar({"Dockerfile": "FROM busybox\n"})
    cases = {
        "truncated tar": ("/build", context_tar({"Dockerfile": "FROM busybox\n", "f": "x" * 3000})[:2100]),
        "a .. member": ("/build", context_tar({"Dockerfile": "FROM busybox\n", "../escape": "x"})),
        "an absolute member": ("/build", context_tar({"Dockerfile": "FROM busybox\n", "/etc/x": "x"})),
        "wrong JSON": ("/build?buildargs=%7Bnot-json", good),
        "unknown network": ("/build?networkmode=container:abc", good),
        "Dockerfile outside": ("/build?dockerfile=../Dockerfile", good),
        "bad tag": ("/build?t=UPPER:case", good),
        "not a tar": ("/build", b"\x00" * 100 + b"hello"),
        "a member below a symlink": ("/build", _special_tar("link", tarfile.SYMTYPE, "/etc", then="link/x")),
        "a device": ("/build", _special_tar("dev", tarfile.CHRTYPE, "")),
        # past the first 64 KiB: GNU tar already unpacks it as it comes, the bad member never reaches it
        "a late member below a symlink": ("/build", _special_tar("link", tarfile.SYMTYPE, "/tmp", then="link/late-escape",
                                                                 big=200_000)),
        "a late truncated tar": ("/build", context_tar({"Dockerfile": "FROM busybox\n", "big": "y" * 300_000})[:250_000]),
    }
    for what, (path, body) in cases.items():
        status, _, data = server.api("POST", path, body, {"Content-Type": "application/x-tar"})
        assert status == 400, (what, status, data)
        assert json.loads(data)["message"], what
    status, _, data = server.api("GET", "/images/json?filters=%5B", None)
    assert status == 400 and "filters" in json.loads(data)["message"]
    status, _, data = server.api("POST", "/containers/create", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "JSON" in json.loads(data)["message"]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(server.sock))
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 200_000 + b"\r\n\r\n")
        assert b" 400 Bad Request" in s.recv(100).split(b"\r\n")[0]  # aiohttp's answer, the server lives on
    assert server.alive()
    # the same start as a context built before goes to disk first (a rebuild reuses its directory):
    # checked there, before it is unpacked
    ok = _special_tar("link", tarfile.SYMTYPE, "/tmp", big=200_000)
    assert server.api("POST", "/build", ok, {"Content-Type": "application/x-tar"})[0] == 200
    bad = _special_tar("link", tarfile.SYMTYPE, "/tmp", then="link/late-escape", big=200_000)
    status, _, data = server.api("POST", "/build", bad, {"Content-Type": "application/x-tar"})
    assert status == 400 and "lies below a symbolic link" in json.loads(data)["message"]
    assert not Path("/tmp/late-escape").exists()
    leftovers = list((server.root / "tmp" / "serve-uploads").iterdir())
    assert leftovers == []  # every upload directory went with its request


def test_disconnect_cancels_the_build(server: Server) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    body = context_tar({"Dockerfile": f"FROM busybox\nRUN echo {marker}; i=0; while [ $i -lt 300 ]; do "
                                      f"echo tick $i; i=$((i+1)); sleep 0.1; done\n"})
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(server.sock))
    s.sendall(f"POST /v1.41/build?t=cancelled:1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while b"tick 3" not in seen:
        chunk = s.recv(65536)
        assert chunk, seen
        seen += chunk
    assert _processes_with(marker)
    s.close()
    deadline = time.monotonic() + 15
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(marker), "the RUN kept running after the client left"
    assert "cancelled" not in server.pybuild("images").stdout
    assert server.alive()


def test_disconnect_stops_a_silent_run_at_once(server: Server) -> None:
    """A RUN printing nothing more: the build is cancelled when the client leaves, not at its next line."""
    marker = f"silent-{uuid.uuid4().hex[:8]}"
    body = context_tar({"Dockerfile": f"FROM busybox\nRUN echo {marker}; sleep 300; echo done\n"})  # sh keeps the marker
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(server.sock))
    s.sendall(f"POST /v1.41/build?t=silent:1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while marker.encode() + b"\n" not in seen.replace(b"\\n", b"\n"):
        chunk = s.recv(65536)
        assert chunk, seen
        seen += chunk
    s.close()
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_with(marker), "the silent RUN kept running after the client left"
    assert "silent" not in server.pybuild("images").stdout and server.alive()


def test_client_gone_mid_upload(server: Server) -> None:
    body = context_tar({"Dockerfile": "FROM busybox\n", "big": os.urandom(2 << 20)})
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(server.sock))
    s.sendall(f"POST /build?t=partial:1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
              + body[: len(body) // 2])
    time.sleep(0.3)
    s.close()  # killed halfway through the context
    uploads = server.root / "tmp" / "serve-uploads"
    deadline = time.monotonic() + 5
    while list(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(uploads.iterdir()) == [] and server.alive()
    assert "partial" not in server.pybuild("images").stdout


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_pull_flag_with_registry_credentials(server: Server, registry: Registry, tmp_path: Path) -> None:
    server.pybuild("push", "--from", "busybox", f"{registry.host}/serve-base:1")
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM {registry.host}/serve-base:1\nRUN echo pulled\n"})
    out = server.docker("build", "--pull", "-t", "pulled:1", str(ctx)).stdout
    assert "pulled" in out and "Successfully tagged pulled:1" in out
    assert f"{registry.host}/serve-base" in server.pybuild("images").stdout


def test_cache_from_is_checked(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo cf\n"})
    proc = server.docker("build", "--cache-from", "Not A Reference!", str(ctx), check=False)
    assert proc.returncode == 1 and "cache-from" in proc.stderr


def test_cli_and_server_share_the_store(server: Server, tmp_path: Path) -> None:
    server.pybuild("tag", "busybox", "from-cli:7")
    assert "from-cli" in server.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM from-cli:7\nRUN echo shared > /s\n"})
    image_id = server.docker("build", "-q", "-t", "from-api:7", str(ctx)).stdout.strip()
    listed = json.loads(server.pybuild("images", "--json").stdout)
    assert any(r["ID"] == image_id and r["Repository"] == "from-api" for r in listed)
    server.pybuild("rmi", "from-api:7")
    assert "from-api" not in server.docker("images").stdout


def test_dockerfile_from_stdin(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "stdin", {"x": "beside\n"})
    out = server.docker("build", "-f-", str(ctx), input=b"FROM busybox\nCOPY x /x\nRUN cat /x\n").stdout
    assert "beside" in out and "Successfully built" in out  # the CLI's tar lacks its end blocks here
    proc = server.docker("build", "-q", "-", input=b"FROM busybox\nRUN echo no-context\n")
    assert proc.stdout.startswith("sha256:")


def test_context_with_symlinks_and_modes(server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "links", {"Dockerfile": "FROM busybox\nCOPY . /ctx\nRUN cat /ctx/l/f && ls -l /ctx/run.sh\n",
                                             "d/f": "through a link\n", "run.sh": "#!/bin/sh\n"})
    os.symlink("d", ctx / "l")
    os.chmod(ctx / "run.sh", 0o755)
    out = server.docker("build", str(ctx)).stdout
    assert "through a link" in out and "-rwxr-xr-x" in out
