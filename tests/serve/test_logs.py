"""Container output through `pybuild serve` as Docker keeps it: stdout and stderr in frames of their
own stream, `logs -t/--since/--until` over the json-file log, what an attached client must see
before a line ends (a prompt), and bytes that are not text, unchanged through attach."""

from __future__ import annotations

import json
import subprocess
import time

from tests.conftest import requires_root
from tests.serve.conftest import DOCKER, Server, needs_docker

pytestmark = [needs_docker, requires_root]


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        stream, size = body[0], int.from_bytes(body[4:8], "big")
        out.append((stream, body[8:8 + size]))
        body = body[8 + size:]
    return out


def test_logs_frames_carry_each_streams_byte(server: Server) -> None:
    cid = server.docker("run", "-d", "--network", "none", "busybox", "sh", "-c",
                        "echo o1; echo e1 >&2; echo o2").stdout.strip()
    server.docker("wait", cid)
    status, headers, body = server.api("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
    assert status == 200 and headers["Content-Type"] == "application/vnd.docker.raw-stream"
    frames = _frames(body)
    assert b"".join(d for s, d in frames if s == 1) == b"o1\no2\n" and [d for s, d in frames if s == 2] == [b"e1\n"]
    assert _frames(server.api("GET", f"/containers/{cid}/logs?stderr=1")[2]) == [(2, b"e1\n")]
    _, _, body = server.api("GET", f"/containers/{cid}/logs?stdout=1&timestamps=1&tail=1")
    [(stream, data)] = _frames(body)
    stamp, _, text = data.partition(b" ")
    assert stream == 1 and text == b"o2\n" and stamp.endswith(b"Z") and len(stamp) == 30
    assert server.api("GET", f"/containers/{cid}/logs?stdout=1&since=yesterday")[0] == 400
    until = server.docker("inspect", "--format", "{{.State.StartedAt}}", cid).stdout.strip()
    assert server.docker("logs", "--until", "2000-01-01T00:00:00Z", cid).stdout == ""
    assert server.docker("logs", "--since", until, cid).stdout == "o1\no2\n"
    info = json.loads(server.docker("inspect", cid).stdout)[0]
    assert info["LogPath"].endswith("/log.json")  # Docker's json-file log, one object a line
    assert json.loads(open(info["LogPath"]).readline())["log"] in ("o1\n", "e1\n")
    server.docker("rm", cid)


def test_attach_shows_a_prompt_before_its_line_ends(server: Server) -> None:
    proc = subprocess.Popen([DOCKER, "run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c",
                             "printf 'name? '; read n; echo \"hi $n\" >&2; head -c 256 /dev/urandom > /tmp/r; "
                             "cat /tmp/r; md5sum /tmp/r >&2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.env(),
                            bufsize=0)  # communicate() reads the pipes' fds, past any buffer
    assert proc.stdout is not None and proc.stdin is not None
    seen = b""
    deadline = time.monotonic() + 30
    while len(seen) < 6 and time.monotonic() < deadline:
        seen += proc.stdout.read(6 - len(seen))
    assert seen == b"name? "  # no newline yet: the shell waits for our answer
    out, err = proc.communicate(b"bob\n", timeout=60)
    assert proc.returncode == 0 and err.startswith(b"hi bob\n")
    import hashlib

    assert err.split(b"\n")[1].split()[0].decode() == hashlib.md5(out).hexdigest() and len(out) == 256
