"""`pybuild run/ps/logs/stop/kill/rm` as a user runs them, in subprocesses, on a private store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from runtime import cgroups
from tests.conftest import FIXTURES, pybuild, requires_root, requires_tool

pytestmark = requires_root


@pytest.fixture(scope="module")
def store(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store with busybox:latest imported and tomcat:alpine built from the example."""
    env = {"PYBUILD_ROOT": str(tmp_path_factory.mktemp("run-store"))}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    pybuild("build", "-q", "-t", "tomcat:alpine", str(FIXTURES / "examples" / "tomcat"), env=env)
    return env


def _state(store: dict[str, str], cid: str) -> dict:
    return json.loads((Path(store["PYBUILD_ROOT"]) / "containers" / cid / "state.json").read_text())


def _wait_for(cond, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_run_rm_returns_the_exit_code_and_leaves_nothing(store: dict[str, str]) -> None:
    proc = pybuild("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7",
                   env=store, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "out\n", "err\n")
    assert pybuild("ps", "-a", "-q", env=store).stdout == ""


def test_run_uses_image_config_and_flags(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol/f").write_text("from host")
    (tmp_path / "env").write_text("# comment\nFROM_FILE=yes\n")
    proc = pybuild("run", "--rm", "--network", "none", "-e", "A=1", "--env-file", str(tmp_path / "env"),
                   "-u", "www-data", "-v", f"{tmp_path / 'vol'}:/mnt/vol:ro", "--hostname", "h1",
                   "tomcat:alpine", "sh", "-c",
                   'echo $PWD $CATALINA_HOME $A $FROM_FILE $(id -u) $HOME $(hostname) $(cat /mnt/vol/f)', env=store)
    assert proc.stdout.split() == ["/usr/local/tomcat", "/usr/local/tomcat", "1", "yes", "33", "/var/www", "h1",
                                   "from", "host"]
    proc = pybuild("run", "--rm", "--network", "none", "-w", "/new/dir", "--entrypoint", "pwd", "busybox", env=store)
    assert proc.stdout == "/new/dir\n"


def test_bad_input_is_a_clear_error(store: dict[str, str]) -> None:
    for args, text in [(("nosuchimage:1",), "is not in the store"),
                       (("-p", "80:99999", "busybox", "true"), "invalid port mapping '80:99999'"),
                       (("-m", "lots", "busybox", "true"), "invalid size 'lots'"),
                       (("-m", "1k", "busybox", "true"), "minimum memory limit allowed is 6MB (got 1k)"),
                       (("--cpus", "-1", "busybox", "true"), "CPUs available"),
                       (("-w", "rel", "busybox", "true"), "it needs to be an absolute path"),
                       (("--name", "a/b", "busybox", "true"), "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
                       (("--hostname", "h" * 65, "busybox", "true"), "longer than 64 bytes"),
                       (("-e", "=x", "busybox", "true"), "invalid environment variable: =x"),
                       (("-u", "ghost", "busybox", "true"), "unable to find user ghost: no matching entries in passwd file"),
                       (("busybox", "no-such-cmd"), 'exec: "no-such-cmd": executable file not found in $PATH')]:
        proc = pybuild("run", "--rm", "--network", "none", *args, env=store, check=False)
        assert proc.returncode == (127 if "exec" in text else 125), (args, proc.returncode)
        assert proc.stderr.splitlines()[0].endswith(text), (args, proc.stderr)  # one message, nothing glued on
        assert "Traceback" not in proc.stderr


def test_zero_limits_mean_none_as_in_docker(store: dict[str, str]) -> None:
    proc = pybuild("run", "--rm", "--network", "none", "-m", "0", "--cpus", "0", "--pids-limit", "0", "busybox",
                   "sh", "-c", "sleep 0 & wait; echo ok", env=store, check=False)
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr


def test_publishing_a_taken_port_fails_with_125(store: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flags in (["-d", "--name", f"taken-{port}"], ["--rm"]):
            proc = pybuild("run", *flags, "-p", f"127.0.0.1:{port}:80", "busybox", "true", env=store, check=False)
            assert proc.returncode == 125, (flags, proc.returncode, proc.stderr)
            assert f"cannot publish port 127.0.0.1:{port}/tcp: Address already in use" in proc.stderr
            assert "Traceback" not in proc.stderr
    line = next(x for x in pybuild("ps", "-a", env=store).stdout.splitlines() if f"taken-{port}" in x)
    assert "Exited (125)" in line and "->" not in line  # the -d one stays, as docker leaves it; no ports shown
    pybuild("rm", f"taken-{port}", env=store)


def test_publish_to_a_free_host_port(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("from busybox httpd\n")
    cid = pybuild("run", "-d", "-p", "127.0.0.1::80", "-v", f"{tmp_path}:/www:ro", "busybox",
                  "httpd", "-f", "-p", "80", "-h", "/www", env=store).stdout.strip()
    try:
        ports = next(line for line in pybuild("ps", env=store).stdout.splitlines() if line.startswith(cid[:12]))
        port = int(ports.split("127.0.0.1:", 1)[1].split("->80/tcp", 1)[0])
        assert port > 0
        body: list[str] = []

        def served() -> bool:
            try:
                body.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read().decode())
                return True
            except OSError:  # httpd not listening yet
                return False

        assert _wait_for(served, 60) and body == ["from busybox httpd\n"]
    finally:
        pybuild("rm", "-f", cid, env=store, check=False)


def test_detached_lifecycle_with_prefixes_and_names(store: dict[str, str]) -> None:
    cid = pybuild("run", "-d", "--network", "none", "--name", "sleeper", "busybox", "sh", "-c",
                  "echo started; trap 'echo got TERM; exit 3' TERM; while true; do sleep 0.1; done",
                  env=store).stdout.strip()
    assert len(cid) == 64
    ps = pybuild("ps", env=store).stdout
    assert cid[:12] in ps and "sleeper" in ps and "Up " in ps and cid[:13] not in ps
    assert _wait_for(lambda: "started" in pybuild("logs", cid[:12], env=store).stdout)
    init_pid = _state(store, cid)["init_pid"]
    assert _alive(init_pid)
    with pytest.raises(AssertionError, match="cannot remove container"):
        pybuild("rm", "sleeper", env=store)
    assert pybuild("stop", cid[:12], env=store).stdout == f"{cid[:12]}\n"
    assert _state(store, cid)["exit_code"] == 3
    assert "got TERM" in pybuild("logs", "sleeper", env=store).stdout
    assert "Exited (3)" in pybuild("ps", "-a", env=store).stdout and cid[:12] not in pybuild("ps", env=store).stdout
    assert not _alive(init_pid)
    pybuild("rm", cid[:5], env=store)
    assert not (Path(store["PYBUILD_ROOT"]) / "containers" / cid).exists()


def test_rm_f_of_a_running_rm_container_in_the_foreground(store: dict[str, str]) -> None:
    name = f"fg-rm-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-m", "builder", "run", "--rm", "--name", name, "--network", "none",
                             "busybox", "sleep", "60"], env={**os.environ, **store}, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: name in pybuild("ps", env=store).stdout, 60)
        removed = pybuild("rm", "-f", name, env=store, check=False)  # both remove it: neither may fail
        assert (removed.returncode, removed.stdout, removed.stderr) == (0, f"{name}\n", "")
        assert proc.wait(timeout=60) == 137 and proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert name not in pybuild("ps", "-a", env=store).stdout


@pytest.mark.parametrize("flags", [["-di"], ["-dit"]])
def test_detached_interactive_keeps_stdin_open(store: dict[str, str], flags: list[str]) -> None:
    cid = pybuild("run", *flags, "--network", "none", "busybox", "cat", env=store).stdout.strip()
    try:
        pybuild("stop", "-t", "60", cid, env=store)  # cat still waits on its open stdin (not /dev/null): SIGTERM ends it
        state = _state(store, cid)
        assert (state["exit_code"], state["error"]) == (143, ""), state
    finally:
        pybuild("rm", "-f", cid, env=store, check=False)


def test_logs_follow_ends_when_the_container_does(store: dict[str, str]) -> None:
    cid = pybuild("run", "-d", "--network", "none", "busybox", "sh", "-c", "echo one; sleep 1; echo two",
                  env=store).stdout.strip()
    proc = pybuild("logs", "-f", cid[:12], env=store, timeout=20)
    assert proc.stdout == "one\ntwo\n"
    assert _state(store, cid)["exit_code"] == 0
    pybuild("rm", cid[:12], env=store)


def test_detached_rm_removes_itself(store: dict[str, str]) -> None:
    cid = pybuild("run", "-d", "--rm", "--network", "none", "busybox", "true", env=store).stdout.strip()
    assert _wait_for(lambda: not (Path(store["PYBUILD_ROOT"]) / "containers" / cid).exists())


def test_an_rm_container_stays_until_its_starter_has_read_its_state(store: dict[str, str]) -> None:
    # `run -d --rm true` could finish and be removed before `run -d` saw it start (it then waited 10 s
    # and failed): the supervisor now removes it only once the starter closes its end of a pipe.
    from builder.containers import RunOptions, create
    from tests.conftest import ROOT

    container = create(Path(store["PYBUILD_ROOT"]), "busybox",
                       RunOptions(command=("true",), network="none", auto_remove=True))
    wait_r, seen = os.pipe()
    supervisor = subprocess.Popen([sys.executable, "-m", "runtime.supervisor", str(container.path), str(wait_r)],
                                  pass_fds=(wait_r,), env={**os.environ, **store, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(wait_r)
    try:
        assert _wait_for(lambda: container.state().status == "exited", 60)
        time.sleep(0.3)  # a supervisor that did not wait would be gone, and the container with it
        assert container.path.exists() and supervisor.poll() is None
    finally:
        os.close(seen)
    assert supervisor.wait(30) == 0
    assert not container.path.exists()


def test_kill_sends_a_signal_and_rm_f_removes_running(store: dict[str, str]) -> None:
    a = pybuild("run", "-d", "--network", "none", "busybox", "sleep", "60", env=store).stdout.strip()
    b = pybuild("run", "-d", "--network", "none", "busybox", "sleep", "60", env=store).stdout.strip()
    pybuild("kill", "-s", "TERM", a[:12], env=store)
    assert _wait_for(lambda: _state(store, a)["status"] == "exited")
    assert _state(store, a)["exit_code"] == 143
    pybuild("rm", "-f", b[:12], env=store)
    assert not (Path(store["PYBUILD_ROOT"]) / "containers" / b).exists()
    proc = pybuild("kill", "nosuch", env=store, check=False)
    assert proc.returncode == 1 and "no such container: nosuch" in proc.stderr
    pybuild("rm", a, env=store)


def _host_state() -> tuple[list[str], list[str], list[str]]:
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    links = sorted(n for n in os.listdir("/sys/class/net") if n.startswith("pb"))
    v = cgroups.version()
    base = cgroups.CGROUP_ROOT / ("" if v == 2 else "memory") / cgroups.PARENT
    return mounts, links, sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []


def test_tomcat_http_end_to_end(store: dict[str, str]) -> None:
    port = 18000 + os.getpid() % 1000
    cid = pybuild("run", "-d", "-p", f"127.0.0.1:{port}:8080", "tomcat:alpine", env=store).stdout.strip()
    try:
        body = ""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.05)
        assert "Hello from tomcat:alpine, built by pybuild" in body
        assert f"127.0.0.1:{port}->8080/tcp" in pybuild("ps", env=store).stdout
        state = _state(store, cid)
        pybuild("stop", cid[:12], env=store)
    finally:
        pybuild("rm", "-f", cid, env=store, check=False)
    assert not _alive(state["init_pid"]) and not _alive(state["supervisor_pid"])
    assert _wait_for(lambda: not Path(f"/sys/class/net/pb{cid[:11]}").exists(), 30)  # gone with its netns
    owner = f"{state['supervisor_pid']}-{cid[:12]}"
    assert owner not in _host_state()[2]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)


def test_kill_9_of_pybuild_leaves_nothing_after_the_next_invocation(store: dict[str, str]) -> None:
    root = Path(store["PYBUILD_ROOT"]) / "containers"
    proc = subprocess.Popen([sys.executable, "-m", "builder", "run", "--name", "victim", "busybox", "sleep", "60"],
                            env={**os.environ, **store}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: any(
            json.loads((d / "state.json").read_text()).get("init_pid") for d in root.iterdir()
            if (d / "state.json").exists() and "victim" in (d / "config.json").read_text()))
        cid = next(d.name for d in root.iterdir() if "victim" in (d / "config.json").read_text())
        state = _state(store, cid)
        assert f"{proc.pid}-{cid[:12]}" in _host_state()[2]
        assert Path(f"/sys/class/net/pb{cid[:11]}").exists()
    finally:
        proc.kill()
        proc.wait()
    assert _wait_for(lambda: not _alive(state["init_pid"]))  # the container died with pybuild
    pybuild("ps", "-a", env=store)  # the next invocation sweeps
    mounts, links, groups = _host_state()
    assert f"{proc.pid}-{cid[:12]}" not in groups
    assert f"pb{cid[:11]}" not in links
    from runtime.executor import _default_run_dir

    assert not any(p.name.startswith(f"{proc.pid}-") for p in _default_run_dir().iterdir())
    assert not any(cid[:12] in m for m in mounts)
    assert "Exited (137)" in pybuild("ps", "-a", env=store).stdout
    pybuild("rm", "victim", env=store)


@requires_tool("podman")
def test_image_runs_the_same_under_podman(store: dict[str, str], tmp_path: Path) -> None:
    script = "cat /usr/local/tomcat/webapps/ROOT/index.html; echo $CATALINA_HOME; pwd; ls /usr/local/tomcat"
    ours = pybuild("run", "--rm", "--network", "none", "tomcat:alpine", "sh", "-c", script, env=store).stdout
    archive = tmp_path / "tomcat.tar"
    pybuild("save", "-o", str(archive), "tomcat:alpine", env=store)
    short = Path(tempfile.mkdtemp(prefix="pbp", dir="/tmp"))  # podman wants a runroot under 50 characters
    storage = ["--root", str(tmp_path / "podman-root"), "--runroot", str(short)]
    load = subprocess.run(["podman", *storage, "load", "-i", str(archive)], capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    theirs = subprocess.run(["podman", *storage, "run", "--rm", "--runtime", "runc", "--network", "none",
                             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "tomcat:alpine",
                             "sh", "-c", script], capture_output=True, text=True)
    subprocess.run(["podman", *storage, "rmi", "-af"], capture_output=True)
    shutil.rmtree(short, ignore_errors=True)
    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout == ours


def _on_a_terminal(args: list[str], env: dict[str, str], rows: int, cols: int, resize_to: tuple[int, int]) -> str:
    """Run pybuild on a pseudo-terminal of `rows` x `cols`; when the output says READY, resize the
    terminal, type a line, and return everything written to the terminal."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ.update(env)
        os.execv(sys.executable, [sys.executable, "-m", "builder", *args])
    out = b""
    typed = False
    deadline = time.monotonic() + 60
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        while time.monotonic() < deadline:
            if not typed and b"READY" in out:
                fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *resize_to, 0, 0))  # SIGWINCH to pybuild
                os.write(fd, b"typed\n")
                typed = True
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: pybuild has exited and closed the terminal
                    break
                if not data:
                    break
                out += data
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return out.decode(errors="replace").replace("\r", "")


def test_run_it_gives_a_terminal_of_the_callers_size(store: dict[str, str]) -> None:
    script = "tty; stty size; stat -c %U /dev/pts/0; echo READY; read line; echo got $line; stty size"
    out = _on_a_terminal(["run", "--rm", "-it", "-u", "nobody", "--network", "none", "busybox", "sh", "-c", script],
                         store, 40, 120, (50, 132))
    lines = out.split("\n")
    assert lines[:4] == ["/dev/pts/0", "40 120", "nobody", "READY"], out
    assert "got typed" in lines and lines[-2:] == ["50 132", ""], out  # resized while it ran


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGUSR1])
def test_signals_to_pybuild_run_reach_the_process(store: dict[str, str], sig: signal.Signals) -> None:
    name = sig.name[3:]
    proc = subprocess.Popen([sys.executable, "-m", "builder", "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                             f"trap 'echo caught {name}; exit 5' {name}; echo ready; while true; do sleep 0.1; done"],
                            env={**os.environ, **store}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # a failed run leaves no container behind
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (5, f"caught {name}\n")


def test_stop_uses_the_images_stopsignal(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox:latest\nSTOPSIGNAL SIGUSR1\n'
        'CMD ["sh", "-c", "trap \'echo usr1; exit 4\' USR1; echo up; while true; do sleep 0.1; done"]\n')
    pybuild("build", "-q", "-t", "stopsig:1", str(tmp_path), env=store)
    cid = pybuild("run", "-d", "--network", "none", "stopsig:1", env=store).stdout.strip()
    assert _wait_for(lambda: "up" in pybuild("logs", cid[:12], env=store).stdout)
    pybuild("stop", "-t", "5", cid[:12], env=store)
    assert _state(store, cid)["exit_code"] == 4
    assert "usr1" in pybuild("logs", cid[:12], env=store).stdout
    pybuild("rm", cid[:12], env=store)


def test_kill_9_of_a_supervisor_takes_its_container_down_and_is_swept(store: dict[str, str]) -> None:
    cid = pybuild("run", "-d", "busybox", "sleep", "60", env=store).stdout.strip()
    state = _state(store, cid)
    assert _alive(state["init_pid"]) and Path(f"/sys/class/net/pb{cid[:11]}").exists()
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    assert _wait_for(lambda: not _alive(state["init_pid"]))
    assert _wait_for(lambda: not Path(f"/sys/class/net/pb{cid[:11]}").exists())
    assert "Exited (137)" in pybuild("ps", "-a", env=store).stdout  # the sweep records it
    assert f"{state['supervisor_pid']}-{cid[:12]}" not in _host_state()[2]
    assert _state(store, cid)["error"] == "its supervisor died"
    pybuild("rm", cid[:12], env=store)


def test_image_volume_is_a_fresh_volume_seeded_from_the_image(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:latest\n"
        "RUN mkdir -p /data/sub && echo seed > /data/sub/f && chown 33:33 /data/sub/f && chmod 640 /data/sub/f"
        " && ln -s sub/f /data/link\n"
        "VOLUME /data\n")
    pybuild("build", "-q", "-t", "vol:1", str(tmp_path), env=store)
    script = ("cat /data/link; stat -c '%u:%g %a' /data/sub/f; echo new > /data/g; echo scratch > /scratch/s; "
              "grep -c -E ' /(data|scratch) ' /proc/mounts")
    proc = pybuild("run", "--name", "volumes", "--network", "none", "-v", "/scratch", "vol:1", "sh", "-c", script,
                   env=store)
    assert proc.stdout.split("\n") == ["seed", "33:33 640", "2", ""]
    cdir = Path(store["PYBUILD_ROOT"]) / "containers" / _state_id(store, "volumes")
    data, scratch = (Path(m["source"]) for m in json.loads((cdir / "config.json").read_text())["mounts"])
    assert data.parent == scratch.parent == cdir / "volumes"
    assert (data / "g").read_text() == "new\n" and (data / "sub/f").read_text() == "seed\n"
    assert os.readlink(data / "link") == "sub/f" and (scratch / "s").read_text() == "scratch\n"
    assert not (cdir / "upper" / "data").exists() and not (cdir / "upper" / "scratch").exists()  # not in the layer
    # a second container gets its own fresh copy, not the first one's changes
    proc = pybuild("run", "--rm", "--network", "none", "vol:1", "ls", "/data", env=store)
    assert proc.stdout.split() == ["link", "sub"]
    pybuild("rm", "volumes", env=store)
    assert not cdir.exists()
    # --rm takes its volumes along; a bind mount on the same path replaces the image's volume
    (tmp_path / "host").mkdir()
    proc = pybuild("run", "--rm", "--network", "none", "-v", f"{tmp_path / 'host'}:/data", "vol:1", "sh", "-c",
                   "ls -A /data; echo mine > /data/x", env=store)
    assert proc.stdout == "" and (tmp_path / "host" / "x").read_text() == "mine\n"
    assert pybuild("ps", "-a", "-q", env=store).stdout == ""


def _state_id(store: dict[str, str], name: str) -> str:
    root = Path(store["PYBUILD_ROOT"]) / "containers"
    return next(d.name for d in root.iterdir() if json.loads((d / "config.json").read_text())["name"] == name)


def test_run_path_imports_stay_lean(store: dict[str, str]) -> None:
    """`pybuild run` has ~150 ms in all: it must not load the store's OCI model, dataclasses or pyroute2
    (checked by what the interpreter imports, not by timing)."""
    for network in ("bridge", "none"):
        pybuild("run", "--rm", "--network", network, "busybox", "true", env=store)  # the bridge exists after this
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "builder", "run", "--rm", "--network", network,
                               "busybox", "true"], env={**os.environ, **store}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.splitlines()
        after_site = lines[next(i for i, ln in enumerate(lines) if ln.endswith("| site")) + 1:]
        ours = {ln.rsplit("|", 1)[1].strip() for ln in after_site if ln.startswith("import time:")}
        assert "runtime.executor" in ours
        heavy = {"builder.store.facade", "builder.store.images", "builder.oci.model", "dataclasses", "pyroute2",
                 "hashlib", "subprocess"}  # builder.store itself is a lazy package; its `lookup` is the fast path
        assert not ours & heavy, (network, ours & heavy)


def test_run_falls_back_to_the_store_when_a_snapshot_is_missing(store: dict[str, str], tmp_path: Path) -> None:
    from builder.containers import stored_image
    from builder.store import Store

    root = Path(store["PYBUILD_ROOT"])
    s = Store.open(root)
    image = s.resolve("tomcat:alpine")
    expected = (str(image.id), image.raw_config(), s.rootfs_dirs(image))
    assert stored_image(root, "tomcat:alpine") == expected == stored_image(root, str(image.id))
    assert stored_image(root, "tomcat") is None and stored_image(root, "nosuch:1") is None  # no such tag
    top = expected[2][-1]
    top.rename(tmp_path / "moved")  # as if never unpacked
    try:
        assert stored_image(root, "tomcat:alpine") is None
        proc = pybuild("run", "--rm", "--network", "none", "tomcat:alpine", "sh", "-c", "echo $CATALINA_HOME", env=store)
        assert proc.stdout == "/usr/local/tomcat\n" and top.is_dir()  # the store unpacked it again
        assert stored_image(root, "tomcat:alpine") == expected
    finally:
        shutil.rmtree(tmp_path / "moved", ignore_errors=True)
