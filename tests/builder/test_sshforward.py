"""builder.sshforward: `--ssh` values, checked before a build starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.sshforward import SshAgents


def test_ssh_values(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        key = tmp_path / "id"
        key.write_text("not read until used\n")
        agents = SshAgents.parse(["default", f"deploy={sock}", f"keys={key},{key}"], {"SSH_AUTH_SOCK": str(sock)})
        assert agents.sources == {"default": (str(sock),), "deploy": (str(sock),), "keys": (str(key), str(key))}
        assert agents.socket("default") == str(sock) and agents.socket("other") is None
        with pytest.raises(BuildError, match="SSH_AUTH_SOCK is not set"):
            SshAgents.parse(["default"], {})
        with pytest.raises(BuildError, match="one agent socket, or key files"):
            SshAgents.parse([f"x={sock},{key}"], {})
    with pytest.raises(BuildError, match=r"--ssh a: cannot read .*nope"):
        SshAgents.parse([f"a={tmp_path / 'nope'}"], {})
    with pytest.raises(BuildError, match="invalid --ssh"):
        SshAgents.parse(["bad id=x"], {})
