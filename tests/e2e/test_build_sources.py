"""`pybuild build` with privileges and remote sources: RUN --security, RUN --mount=type=ssh, ADD of git URLs."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import pybuild, requires_root, requires_tool
from tests.e2e.conftest import cached, step_no

pytestmark = requires_root



def _context(tmp: Path, dockerfile: str) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _output(stderr: str) -> list[str]:
    """The lines RUN steps printed (`#N 0.123 text` in plain progress), without step headers."""
    return [m.group(1) for m in re.finditer(r"^#\d+ \d+\.\d+ (.*)$", stderr, re.M)]


def test_security_insecure_needs_allow_and_gets_every_capability(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\n"
                   "RUN --security=insecure mkdir /m && mount -t tmpfs none /m && echo insecure-mounted"
                   " && grep -q ' /sys sysfs rw' /proc/mounts && ! grep -q ' /proc/sys ' /proc/mounts && echo open"
                   " && test -c /dev/fuse && test -c /dev/net/tun && test -c /dev/loop-control && test -b /dev/loop0"
                   " && mknod /dev/made c 1 3 && echo devices\n"
                   "RUN mkdir /n && if mount -t tmpfs none /n; then echo sandbox-mounted; else echo sandbox-denied; fi"
                   " && grep -q ' /sys sysfs ro' /proc/mounts && grep -q ' /proc/sys proc ro' /proc/mounts && echo closed"
                   " && test ! -e /dev/fuse && test ! -e /dev/loop0 && ! mknod /dev/made c 1 3 2>/dev/null && echo no-devices\n")
    refused = pybuild("build", "--progress=plain", str(ctx), env=store, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Dockerfile:2" in refused.stderr and "--allow security.insecure" in refused.stderr
    assert "[1/3] FROM" not in refused.stderr  # refused before any stage step ran
    built = pybuild("build", "--allow", "security.insecure", "--progress=plain", str(ctx), env=store)
    out = _output(built.stderr)
    assert "insecure-mounted" in out and "sandbox-denied" in out and "sandbox-mounted" not in out
    assert "open" in out and "closed" in out  # /sys writable and /proc unmasked only when insecure
    assert "devices" in out and "no-devices" in out  # BuildKit's insecure-mode devices, and a writable /dev
    again = pybuild("build", "--progress=plain", str(ctx), env=store, check=False)  # a cached step still needs it
    assert again.returncode != 0 and "security.insecure" in again.stderr
    bad = pybuild("build", "--allow", "everything", str(ctx), env=store, check=False)
    assert bad.returncode != 0 and "invalid --allow 'everything'" in bad.stderr


def test_run_network_host_needs_allow(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN --network=host readlink /proc/self/ns/net > /netns\n")
    refused = pybuild("build", str(ctx), env=store, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Dockerfile:2" in refused.stderr and "--allow network.host" in refused.stderr
    pybuild("build", "--allow", "network.host", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    assert (tmp_path / "fs" / "netns").read_text().strip() == os.readlink("/proc/self/ns/net")  # the host's


# --- RUN --mount=type=ssh ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssh_image(store: dict[str, str], busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox plus the host's ssh-add and the libraries it loads, imported as `sshtools`."""
    ssh_add = shutil.which("ssh-add")
    if ssh_add is None:
        pytest.skip("not installed: ssh-add (openssh-client)")
    ldd = subprocess.run(["ldd", ssh_add], capture_output=True, text=True, check=True).stdout
    files = [ssh_add, *re.findall(r"(/\S+) \(0x", ldd)]
    out = tmp_path_factory.mktemp("sshtools") / "sshtools.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w") as tar:
        names = set()
        for member in src:
            tar.addfile(member, src.extractfile(member) if member.isfile() else None)
            names.add(member.name)
        for path in files:
            parts = Path(path.lstrip("/")).parts
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in names:
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    names.add(parent)
            tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
            names.add(path.lstrip("/"))
    pybuild("import", str(out), "sshtools:latest", env=store)
    return "sshtools"


def _ssh_key(directory: Path, comment: str) -> tuple[Path, str]:
    """A new ed25519 key and its fingerprint line as `ssh-add -l` prints it."""
    key = directory / comment
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                                 check=True).stdout.strip()
    return key, fingerprint


def _agent_holding(key: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A real ssh-agent (ours to kill) holding `key`, and its socket."""
    sock = tmp / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # generous: the machine is shared
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, check=True)
    return agent, sock


@requires_tool("ssh-agent", "ssh-keygen")
def test_ssh_mount_forwards_the_agent_and_leaves_no_trace(store: dict[str, str], ssh_image: str,
                                                          tmp_path: Path) -> None:
    key, fingerprint = _ssh_key(tmp_path, "forwarded-key")
    agent, agent_sock = _agent_holding(key, tmp_path)
    try:
        deploy, deploy_fp = _ssh_key(tmp_path, "deploy-key")
        ctx = _context(tmp_path, f"FROM {ssh_image}\n"
                       "RUN --mount=type=ssh echo \"sock=$SSH_AUTH_SOCK\" && ssh-add -l\n"
                       "RUN --mount=type=ssh,id=deploy,target=/tmp/agent,required=true ssh-add -l\n"
                       "RUN --mount=type=ssh,uid=33,gid=33,mode=0660 stat -c 'owner=%u:%g mode=%a' $SSH_AUTH_SOCK\n")
        env = {**store, "SSH_AUTH_SOCK": str(agent_sock)}
        built = pybuild("build", "-t", "ssh:1", "--progress=plain", "--ssh", "default", "--ssh", f"deploy={deploy}",
                        "-o", f"type=local,dest={tmp_path / 'fs'}", "-o", "type=image", str(ctx), env=env)
        out = _output(built.stderr)
        assert "sock=/run/buildkit/ssh_agent.0" in out
        assert fingerprint in out and deploy_fp in out  # each RUN saw its own agent's key
        assert out.index(fingerprint) < out.index(deploy_fp)
        assert "owner=33:33 mode=660" in out  # the mount's owner and mode (the agent's socket is untouched)
        assert not (tmp_path / "fs" / "run" / "buildkit").exists() and not (tmp_path / "fs" / "tmp" / "agent").exists()
        cfg = json.loads(pybuild("inspect", "ssh:1", env=store).stdout)
        assert not [e for e in cfg[0]["Config"].get("Env") or [] if e.startswith("SSH_AUTH_SOCK=")]
        for path in Path(store["PYBUILD_ROOT"]).rglob("*"):  # no socket path in layers, keys or records
            if path.is_file() and path.stat().st_size < 1 << 20:
                data = path.read_bytes()
                assert str(agent_sock).encode() not in data and str(deploy).encode() not in data, path
    finally:
        agent.kill()
        agent.wait()


def test_ssh_mount_required_or_optional_without_ssh_flag(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN --mount=type=ssh,required=true echo needs-agent\n")
    proc = pybuild("build", str(ctx), env=store, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "Dockerfile:2" in proc.stderr and "'default' is required" in proc.stderr and "--ssh" in proc.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" || echo no-agent\n")
    assert "no-agent" in _output(pybuild("build", "--progress=plain", str(ctx), env=store).stderr)
    unset = pybuild("build", "--ssh", "default", str(ctx), env={**store, "SSH_AUTH_SOCK": ""}, check=False)
    assert unset.returncode != 0 and "--ssh default: SSH_AUTH_SOCK is not set" in unset.stderr
    missing = pybuild("build", "--ssh", f"k={tmp_path / 'nokey'}", str(ctx), env=store, check=False)
    assert missing.returncode != 0 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


# --- ADD of a git repository -------------------------------------------------------------------------

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process started with start_new_session=True and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`git daemon` on 127.0.0.1 serving a bare repo; yields (url, work clone that pushes to it)."""
    if shutil.which("git") is None:
        pytest.skip("not installed: git")
    base = tmp_path_factory.mktemp("git")
    work = base / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "sub" / "dir").mkdir(parents=True)
    (work / "README").write_text("one\n")
    (work / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (work / "sub" / "run.sh").chmod(0o755)
    (work / "sub" / "dir" / "f").write_text("deep\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "one", cwd=work)
    _git("tag", "-a", "v1", "-m", "v1", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(base / "srv" / "repo.git"), cwd=base)
    _git("remote", "add", "origin", str(base / "srv" / "repo.git"), cwd=work)
    for _ in range(20):  # a free port can be taken between the probe and the daemon: try another
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # its own process group: `git daemon` runs git-daemon as a child, and both must go at the end
        daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base / 'srv'}",
                                   "--listen=127.0.0.1", f"--port={port}", str(base / "srv")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"git://127.0.0.1:{port}/repo.git"
        deadline = time.monotonic() + 60
        while daemon.poll() is None and time.monotonic() < deadline:
            if subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0:
                try:
                    yield url, work
                finally:
                    _stop_group(daemon)
                return
            time.sleep(0.05)
        _stop_group(daemon)
    pytest.fail("git daemon did not start")


class _GitHttpBackend(http.server.BaseHTTPRequestHandler):
    """git's smart HTTP protocol: each request handed to `git http-backend` (CGI) for the repos under `root`."""

    root = ""

    def do_GET(self) -> None:  # noqa: N802
        self._cgi()

    def do_POST(self) -> None:  # noqa: N802
        self._cgi()

    def log_message(self, *args: Any) -> None:
        pass

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        env = {**os.environ, "GIT_PROJECT_ROOT": self.root, "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
               "PATH_INFO": path, "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(length), "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""), "REMOTE_ADDR": "127.0.0.1"}
        out = subprocess.run(["git", "http-backend"], input=self.rfile.read(length), env=env,
                             capture_output=True).stdout
        head, _, body = out.partition(b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n")  # CGI headers, body
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def git_http(git_server: Any) -> Any:
    """The same bare repo over git's smart HTTP on 127.0.0.1: yields its http://.../repo.git URL."""
    handler = type("Handler", (_GitHttpBackend,), {"root": str(git_server[1].parent / "srv")})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/repo.git"
    finally:
        server.shutdown()
        server.server_close()


def test_add_git_ref_subdir_keep_git_dir_and_cache_on_the_commit(store: dict[str, str], git_server: Any,
                                                                 tmp_path: Path) -> None:
    url, work = git_server
    first = _git("rev-parse", "HEAD", cwd=work)
    ctx = _context(tmp_path, f"FROM busybox\nADD {url}#v1:sub /src\nADD {url}#{first} /pinned\n"
                   f"ADD --keep-git-dir=true {url}#main /full\n")
    args = ["build", "--progress=plain", "-o", f"type=local,dest={tmp_path / 'fs'}", "-o", "type=image", "-t", "git:1"]
    pybuild(*args, str(ctx), env=store)
    fs = tmp_path / "fs"
    assert (fs / "src" / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert (fs / "src" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (fs / "src" / "dir" / "f").stat().st_mode & 0o777 == 0o644
    assert not (fs / "src" / ".git").exists() and not (fs / "src" / "README").exists()
    assert (fs / "full" / "README").read_text() == "one\n" and (fs / "full" / ".git" / "HEAD").is_file()
    assert not (fs / "pinned" / ".git").exists()
    again = pybuild("build", "--progress=plain", str(ctx), env=store).stderr
    assert all(cached(again, name) for name in ("[2/4] ADD", "[3/4] ADD", "[4/4] ADD"))
    (work / "README").write_text("two\n")  # main moves on; the tag and the pinned commit do not
    _git("commit", "-q", "-am", "two", cwd=work)
    _git("push", "-q", "origin", "main", cwd=work)
    moved = pybuild(*args, str(ctx), env=store).stderr
    assert cached(moved, "[2/4] ADD") and cached(moved, "[3/4] ADD") and not cached(moved, "[4/4] ADD")
    assert (fs / "full" / "README").read_text() == "two\n"
    assert (fs / "pinned" / "README").read_text() == "one\n"


def test_add_git_errors_name_the_url(store: dict[str, str], git_server: Any, tmp_path: Path) -> None:
    url, _ = git_server
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        unreachable = f"git://127.0.0.1:{closed.getsockname()[1]}/repo.git"
        for source, message in ((f"{url}#no-such-branch", "no branch or tag named 'no-such-branch'"),
                                (f"{url}#main:no-such-dir", "no directory 'no-such-dir'"),
                                (unreachable, "Connection refused")):
            ctx = _context(tmp_path, f"FROM busybox\nADD {source} /src\n")
            proc = pybuild("build", str(ctx), env=store, check=False)
            assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
            assert "Dockerfile:2" in proc.stderr and message in proc.stderr, proc.stderr
            assert f"ADD {source.partition('#')[0]}" in proc.stderr
    ctx = _context(tmp_path, f"FROM busybox\nADD {url} README /src/\n")
    proc = pybuild("build", str(ctx), env=store, check=False)
    assert proc.returncode != 0 and "Dockerfile:2" in proc.stderr and "exactly one source" in proc.stderr
    tagged = subprocess.run(["git", "ls-remote", url, "refs/tags/v1^{}"], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    ctx = _context(tmp_path, f"FROM busybox\nADD --checksum={'0' * 40} {url}#v1 /src\n")
    proc = pybuild("build", str(ctx), env=store, check=False)
    assert proc.returncode != 0 and "Dockerfile:2" in proc.stderr and f"v1 is commit {tagged}" in proc.stderr
    ctx = _context(tmp_path, f"FROM busybox\nADD --checksum={tagged} {url}#v1 /src\n")
    pybuild("build", str(ctx), env=store)


# --- progress bars for byte work ---------------------------------------------------------------------

def _build_on_a_tty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `pybuild build` with stderr on a pseudo-terminal (120 columns); its exit code and output."""
    import fcntl
    import pty
    import struct
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # the view draws to the width
    proc = subprocess.Popen([sys.executable, "-m", "builder", "build", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, env={**os.environ, **env})
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    return proc.wait(timeout=300), out.decode(errors="replace")


def test_unpack_and_commit_rows_on_a_tty_only(busybox_tar: Path, tmp_path: Path) -> None:
    env = {"PYBUILD_ROOT": str(tmp_path / "store")}  # a fresh store: the base layer is unpacked once
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    ctx = _context(tmp_path, "FROM busybox\nRUN head -c 3000000 /dev/zero > /big\n")
    code, out = _build_on_a_tty([str(ctx)], env)  # --progress=auto on a terminal
    assert code == 0, out
    assert re.search(r" => => unpacking [\d.]+[kM]?B", out) and re.search(r" => => committing [\d.]+[kM]?B", out), out
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN head -c 3000001 /dev/zero > /big\n")
    plain = pybuild("build", "--progress=plain", str(ctx), env=env).stderr  # not a terminal: no byte rows
    json_out = pybuild("build", "--progress=json", "--no-cache", str(ctx), env=env).stderr
    assert "committing" not in plain and "committing" not in json_out and f"#{step_no(plain, '[2/2] RUN')} DONE" in plain
    code, again_tty = _build_on_a_tty([str(ctx)], {**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert code == 0 and " => CACHED [2/2] RUN" in again_tty and "committing" not in again_tty
    assert "unpacking" not in again_tty and "| builder.util.progress" in again_tty


def test_add_git_over_http_keeps_url_credentials_out_of_history_keys_and_logs(
        busybox_tar: Path, git_http: str, tmp_path: Path) -> None:
    env = {"PYBUILD_ROOT": str(tmp_path / "store")}  # its own store: every file in it is searched below
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    with_token = git_http.replace("http://", "http://builder:s3cr3t-t0ken@")  # the test server ignores it
    ctx = _context(tmp_path, f"FROM busybox\nADD {with_token}#v1:sub/dir /fromhttp\n")
    proc = pybuild("build", "-t", "githttp:1", "--progress=plain", "-o", f"type=local,dest={tmp_path / 'fs'}",
                   "-o", "type=image", str(ctx), env=env)
    assert (tmp_path / "fs" / "fromhttp" / "f").read_text() == "deep\n"
    assert sorted(p.name for p in (tmp_path / "fs" / "fromhttp").iterdir()) == ["f"]
    assert f"ADD {git_http}#v1:sub/dir /fromhttp" in proc.stderr and "s3cr3t-t0ken" not in proc.stderr
    history = pybuild("history", "--no-trunc", "githttp:1", env=env).stdout
    assert f"{git_http}#v1:sub/dir" in history and "s3cr3t-t0ken" not in history
    for path in (tmp_path / "store").rglob("*"):  # records, keys, configs, layers
        if path.is_file() and path.parent.name != "ast":  # cache/ast: the parsed Dockerfile itself
            assert b"s3cr3t-t0ken" not in path.read_bytes(), path


@requires_tool("ssh-agent", "ssh-keygen", "sshd")
def test_add_git_over_ssh_authenticates_with_the_ssh_agent(store: dict[str, str], git_server: Any,
                                                           tmp_path: Path) -> None:
    """`ADD ssh://...` through a real sshd on 127.0.0.1 that accepts only a key held by the `--ssh` agent."""
    _, work = git_server
    host_key, _ = _ssh_key(tmp_path, "host-key")
    client_key, _ = _ssh_key(tmp_path, "client-key")
    (tmp_path / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    sshd = None
    for _ in range(20):  # a free port can be taken between the probe and sshd: try another
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        (tmp_path / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {tmp_path}/authorized_keys\n"
            "PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n")
        sshd = subprocess.Popen([shutil.which("sshd") or "sshd", "-D", "-e", "-f", str(tmp_path / "sshd_config")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while sshd.poll() is None and time.monotonic() < deadline:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        if sshd.poll() is None:
            break
    assert sshd is not None and sshd.poll() is None, "sshd did not start"
    agent, agent_sock = _agent_holding(client_key, tmp_path)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} " + Path(f"{host_key}.pub").read_text())
        env = {**store, "SSH_AUTH_SOCK": str(agent_sock), "GIT_SSH_COMMAND": f"ssh -o UserKnownHostsFile={known}"}
        url = f"ssh://root@127.0.0.1:{port}{work.parent / 'srv' / 'repo.git'}"
        ctx = _context(tmp_path, f"FROM busybox\nADD {url}#v1:sub /viassh\n")
        denied = pybuild("build", str(ctx), env=env, check=False)  # no --ssh: the agent is not used
        assert denied.returncode != 0 and "Traceback" not in denied.stderr
        assert "Dockerfile:2" in denied.stderr and f"ADD {url}" in denied.stderr and "Permission denied" in denied.stderr
        pybuild("build", "--ssh", "default", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=env)
        assert (tmp_path / "fs" / "viassh" / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    finally:
        agent.kill()
        agent.wait()
        sshd.kill()
        sshd.wait()


def test_add_git_checks_out_submodules_but_never_over_file(store: dict[str, str], git_server: Any,
                                                           tmp_path: Path) -> None:
    url, work = git_server
    srv = work.parent / "srv"
    lib = tmp_path / "lib"
    lib.mkdir()
    _git("init", "-q", "-b", "main", cwd=lib)
    (lib / "lib.txt").write_text("from the submodule\n")
    _git("add", ".", cwd=lib)
    _git("commit", "-q", "-m", "lib", cwd=lib)
    _git("clone", "-q", "--bare", str(lib), str(srv / f"lib-{tmp_path.name}.git"), cwd=tmp_path)
    clone = tmp_path / "clone"
    _git("clone", "-q", str(srv / "repo.git"), str(clone), cwd=tmp_path)
    _git("checkout", "-q", "-b", f"withsub-{tmp_path.name}", cwd=clone)
    # a URL relative to the superproject's: the same server for the build, the local bare repo here
    _git("-c", "protocol.file.allow=always", "submodule", "add", "-q", f"../lib-{tmp_path.name}.git", "vendor/lib",
         cwd=clone)
    _git("commit", "-q", "-m", "with a submodule", cwd=clone)
    _git("push", "-q", "origin", f"withsub-{tmp_path.name}", cwd=clone)
    ctx = _context(tmp_path, f"FROM busybox\nADD {url}#withsub-{tmp_path.name} /ws\n")
    pybuild("build", "-o", f"type=local,dest={tmp_path / 'fs'}", str(ctx), env=store)
    ws = tmp_path / "fs" / "ws"
    assert (ws / "vendor" / "lib" / "lib.txt").read_text() == "from the submodule\n"
    assert not (ws / ".git").exists() and not (ws / "vendor" / "lib" / ".git").exists()
    # a submodule pointing at the building machine's files is refused, not read
    (clone / ".gitmodules").write_text(f'[submodule "vendor/lib"]\n\tpath = vendor/lib\n\turl = file://{lib}\n')
    _git("commit", "-q", "-am", "file url", cwd=clone)
    _git("push", "-q", "origin", f"withsub-{tmp_path.name}", cwd=clone)
    proc = pybuild("build", "-o", f"type=local,dest={tmp_path / 'fs2'}", str(ctx), env=store, check=False)
    assert proc.returncode != 0 and "Dockerfile:2" in proc.stderr and "submodules" in proc.stderr, proc.stderr
    assert "transport 'file' not allowed" in proc.stderr, proc.stderr
    assert not (tmp_path / "fs2" / "ws" / "vendor" / "lib" / "lib.txt").exists()
