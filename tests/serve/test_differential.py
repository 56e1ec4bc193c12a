"""The same docker commands against a real dockerd (a private one: its own socket, data and exec
roots, no iptables, no bridge) and against `pybuild serve`: the same exit codes and equivalent output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.builder.registry_server import Registry
from tests.conftest import requires_root
from tests.serve.conftest import DOCKER, Server, needs_docker, write_context

pytestmark = [needs_docker, requires_root,
              pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd comes with docker.io")]


class Dockerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "docker.sock"
        self.log = open(base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.sock}", "--data-root", str(base / "root"), "--exec-root",
             str(base / "exec"), "--pidfile", str(base / "pid"), "--iptables=false", "--bridge=none"],
            stdout=self.log, stderr=subprocess.STDOUT)
        (base / "config").mkdir()

    def docker(self, *args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "0",
               "DOCKER_CONFIG": str(self.base / "config")}
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env, cwd=cwd, input=input, timeout=120)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        for sub in ("root", "exec"):
            subprocess.run(["umount", "-R", str(self.base / sub)], stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Dockerd]:
    d = Dockerd(tmp_path_factory.mktemp("dockerd", numbered=True))
    try:
        deadline = time.monotonic() + 60
        while d.docker("version").returncode != 0:
            if d.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("dockerd did not start:\n" + (d.base / "dockerd.log").read_text()[-3000:])
            time.sleep(0.2)
        assert d.docker("import", "--change", "CMD [\"sh\"]", str(busybox_tar), "busybox:latest").returncode == 0
        yield d
    finally:
        d.stop()


def both(dockerd: Dockerd, server: Server, *args: str, cwd: Path | None = None
         ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    real = dockerd.docker(*args, cwd=cwd)
    ours = server.docker(*args, cwd=cwd, check=False)
    assert real.returncode == ours.returncode, (args, real, ours)
    return real, ours


def test_build_outputs_and_exit_codes(dockerd: Dockerd, server: Server, tmp_path: Path) -> None:
    ok = write_context(tmp_path / "ok", {"Dockerfile": "FROM busybox\nARG V=1\nRUN echo hello-diff-$V\nCOPY f /f\n",
                                         "f": "x\n"})
    real, ours = both(dockerd, server, "build", "--build-arg", "V=2", "-t", "diff:1", str(ok))
    for out in (real.stdout, ours.stdout):
        assert "hello-diff-2" in out and "Successfully tagged diff:1" in out
        assert re.search(r"Successfully built [0-9a-f]{12}\n", out)
        assert "Step 1/" in out and ": FROM busybox" in out
    real, ours = both(dockerd, server, "build", "-q", str(ok))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", real.stdout) and re.fullmatch(r"sha256:[0-9a-f]{64}\n", ours.stdout)
    failing = write_context(tmp_path / "fail", {"Dockerfile": "FROM busybox\nRUN echo going; exit 3\n"})
    real, ours = both(dockerd, server, "build", str(failing))
    assert real.returncode == 3 and "going" in real.stdout and "going" in ours.stdout
    bad = write_context(tmp_path / "bad", {"Dockerfile": "FROM busybox\nNOPE x\n"})
    real, ours = both(dockerd, server, "build", str(bad))
    assert real.returncode == 1 and "nope" in real.stderr.lower() and "nope" in ours.stderr.lower()
    missing = write_context(tmp_path / "missing", {"Dockerfile": "FROM busybox\nCOPY absent /x\n"})
    real, ours = both(dockerd, server, "build", str(missing))
    assert real.returncode == 1 and "absent" in real.stderr and "absent" in ours.stderr


def test_build_numbers_every_instruction_as_dockerd(dockerd: Dockerd, server: Server, tmp_path: Path) -> None:
    """`Step N/M : TEXT` for every instruction, meta ARGs and config-only ones included, with the text as
    written (continuations joined), both on a cold build and a cached one."""
    text = ("ARG X=1\nFROM busybox AS a\nenv A=1 \\\n    B=2\nRUN echo one && \\\n    echo two\nLABEL l=1\n"
            "WORKDIR /\nFROM busybox\nWORKDIR /w\nCOPY --from=a /etc/passwd /p\nEXPOSE 80\nCMD [\"sh\", \"-c\", \"echo\"]\n")
    ctx = write_context(tmp_path / "steps", {"Dockerfile": text})
    for cold in (True, False):
        real, ours = both(dockerd, server, "build", str(ctx))
        steps = [sorted(re.findall(r"^Step \d+/\d+ : .*$", out, re.M)) for out in (real.stdout, ours.stdout)]
        assert len(steps[0]) == 11 and steps[0] == steps[1], (real.stdout, ours.stdout)
        assert "Step 4/11 : RUN echo one &&     echo two" in steps[1]
        if cold:  # a stage's last instructions come after its last step's output, as dockerd's do
            assert ours.stdout.index("\ntwo\n") < ours.stdout.index("Step 6/11 : WORKDIR /"), ours.stdout


def test_image_commands(dockerd: Dockerd, server: Server, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "img", {"Dockerfile": "FROM busybox\nRUN echo img > /i\n"})
    both(dockerd, server, "build", "-q", "-t", "dimg:1", str(ctx))
    real, ours = both(dockerd, server, "images", "--format", "{{.Repository}}:{{.Tag}}", "dimg")
    assert real.stdout == ours.stdout == "dimg:1\n"
    both(dockerd, server, "tag", "dimg:1", "dimg:alias")
    real, ours = both(dockerd, server, "rmi", "dimg:alias")
    assert real.stdout == ours.stdout == "Untagged: dimg:alias\n"
    real, ours = both(dockerd, server, "rmi", "nope-image:1")
    assert real.returncode == 1 and "No such image: nope-image:1" in real.stderr and "No such image: nope-image:1" in ours.stderr
    real, ours = both(dockerd, server, "inspect", "--format", "{{.RepoTags}}", "dimg:1")
    assert real.stdout == ours.stdout == "[dimg:1]\n"
    real, ours = both(dockerd, server, "image", "inspect", "nope-image:1")
    assert real.returncode == 1 and real.stderr == ours.stderr
    real, ours = both(dockerd, server, "history", "--format", "{{.CreatedBy}}", "dimg:1")
    assert "echo img > /i" in real.stdout and "echo img > /i" in ours.stdout
    archive = tmp_path / "both.tar"
    assert server.docker("save", "-o", str(archive), "dimg:1").returncode == 0
    loaded = dockerd.docker("load", "-i", str(archive))  # what pybuild saves, dockerd loads
    assert loaded.returncode == 0 and "Loaded image: dimg:1" in loaded.stdout
    real, ours = both(dockerd, server, "run", "--rm", "--network", "none", "dimg:1", "cat", "/i")
    assert real.stdout == ours.stdout == "img\n"


def test_push_and_pull(dockerd: Dockerd, server: Server, registry: Registry, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "push", {"Dockerfile": "FROM busybox\nRUN echo pushed-diff > /p\n"})
    for who, run in (("dockerd", dockerd.docker), ("pybuild", lambda *a: server.docker(*a, check=False))):
        ref = f"{registry.host}/diff/{who}:1"
        assert run("build", "-q", "-t", ref, str(ctx)).returncode == 0
        pushed = run("push", ref)
        assert pushed.returncode == 0 and "digest: sha256:" in pushed.stdout, (who, pushed)
        assert re.search(r"^[0-9a-f]{12}: Pushed$", pushed.stdout, re.M), (who, pushed)  # per-layer lines
        assert run("rmi", ref).returncode == 0
        pulled = run("pull", ref)
        assert pulled.returncode == 0 and f"Status: Downloaded newer image for {ref}" in pulled.stdout, (who, pulled)
    real, ours = both(dockerd, server, "pull", f"{registry.host}/diff/absent:1")
    assert real.returncode == 1


def test_container_commands(dockerd: Dockerd, server: Server) -> None:
    real, ours = both(dockerd, server, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; exit 3")
    assert real.returncode == 3 and real.stdout == ours.stdout == "out\n"
    real, ours = both(dockerd, server, "run", "-d", "--network", "none", "--name", "dd1", "busybox", "sleep", "100")
    assert re.fullmatch(r"[0-9a-f]{64}\n", real.stdout) and re.fullmatch(r"[0-9a-f]{64}\n", ours.stdout)
    real, ours = both(dockerd, server, "ps", "--format", "{{.Names}} {{.Image}} {{.Command}}", "--filter", "name=dd1")
    assert real.stdout == ours.stdout == 'dd1 busybox "sleep 100"\n'
    real, ours = both(dockerd, server, "stop", "-t", "1", "dd1")
    assert real.stdout == ours.stdout == "dd1\n"
    real, ours = both(dockerd, server, "inspect", "--format", "{{.State.Status}} {{.State.Running}}", "dd1")
    assert real.stdout == ours.stdout == "exited false\n"
    real, ours = both(dockerd, server, "kill", "dd1")
    assert real.returncode == 1
    real, ours = both(dockerd, server, "rm", "dd1")
    assert real.stdout == ours.stdout == "dd1\n"
    real, ours = both(dockerd, server, "run", "--name", "dl1", "--network", "none", "busybox", "echo", "logged")
    real, ours = both(dockerd, server, "logs", "dl1")
    assert real.stdout == ours.stdout == "logged\n"
    both(dockerd, server, "rm", "dl1")
    real, ours = both(dockerd, server, "rm", "no-such-container")
    assert real.returncode == 1 and real.stderr == ours.stderr
    real, ours = both(dockerd, server, "run", "--network", "none", "busybox", "no-such-command")
    assert real.returncode == 127


def test_logs_streams_timestamps_and_time_bounds(dockerd: Dockerd, server: Server) -> None:
    """stdout and stderr apart (foreground run and logs), `logs -t` (RFC 3339 with 9 digits),
    --since/--until at an entry's own time (both inclusive), --tail, a line written in two pieces."""
    script = "echo a; echo b >&2; sleep 1.2; echo c; printf part; sleep 0.3; echo ' end'; printf 'no newline'"
    real, ours = both(dockerd, server, "run", "--name", "dlt", "--network", "none", "busybox", "sh", "-c", script)
    assert real.stdout == ours.stdout == "a\nc\npart end\nno newline" and real.stderr == ours.stderr == "b\n"
    stamped = {}
    for side, run in (("real", dockerd.docker), ("ours", server.docker)):
        out = run("logs", "-t", "dlt")
        lines = out.stdout.splitlines()
        assert [ln.split(" ", 1)[1] for ln in lines] == ["a", "c", "part end", "no newline"], (side, out)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z b\n", out.stderr), (side, out)
        stamped[side] = lines[1].split()[0]  # `c`, 1.2 s after a and b
    for flag, stdout, stderr in (("--until", "a\nc\n", "b\n"), ("--since", "c\npart end\nno newline", "")):
        real = dockerd.docker("logs", flag, stamped["real"], "dlt")
        ours = server.docker("logs", flag, stamped["ours"], "dlt")
        assert (real.stdout, real.stderr) == (ours.stdout, ours.stderr) == (stdout, stderr), flag
    real, ours = both(dockerd, server, "logs", "--tail", "2", "dlt")
    assert real.stdout == ours.stdout == "part end\nno newline"
    real, ours = both(dockerd, server, "logs", "--since", "5m", "dlt")
    assert real.stdout == ours.stdout
    both(dockerd, server, "rm", "dlt")


def test_exec(dockerd: Dockerd, server: Server) -> None:
    both(dockerd, server, "run", "-d", "--name", "dex", "--network", "none", "-e", "FOO=bar", "-w", "/tmp", "busybox",
         "sleep", "300")
    real, ours = both(dockerd, server, "exec", "dex", "sh", "-c", "echo $FOO; pwd; echo e >&2; exit 3")
    assert real.returncode == 3 and (real.stdout, real.stderr) == (ours.stdout, ours.stderr) == ("bar\n/tmp\n", "e\n")
    real = dockerd.docker("exec", "-i", "dex", "cat", input="piped\n")
    ours = server.docker("exec", "-i", "dex", "cat", input=b"piped\n")
    assert real.stdout == ours.stdout == "piped\n"
    real, ours = both(dockerd, server, "exec", "-u", "nobody", "-w", "/", "dex", "sh", "-c", "id; pwd")
    assert real.stdout == ours.stdout
    real, ours = both(dockerd, server, "exec", "dex", "no-such-program")
    assert real.returncode == 126 and real.stdout == ours.stdout
    both(dockerd, server, "rm", "-f", "dex")
    real, ours = both(dockerd, server, "exec", "dex", "true")
    assert real.returncode == 1 and real.stderr == ours.stderr
