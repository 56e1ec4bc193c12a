"""builder.build.sources.ssh: `--ssh` values (checked before a build starts), our own agents, the proxy socket."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.build.sources.ssh import AgentProxy, SshAgents
from tests.conftest import requires_tool


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


def _ssh_add_list(sock: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, capture_output=True,
                          text=True, timeout=120)


def _key(tmp: Path, name: str, passphrase: str = "") -> tuple[Path, str]:
    key = tmp / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)], check=True)
    return key, subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                               check=True).stdout.strip()


@requires_tool("ssh-agent", "ssh-add", "ssh-keygen")
def test_key_files_load_into_an_agent_of_our_own_and_the_proxy_relays_it(tmp_path: Path) -> None:
    key, fingerprint = _key(tmp_path, "k1")
    agents = SshAgents.parse([f"k={key}"], {})
    try:
        upstream = agents.socket("k")
        assert upstream is not None and agents.socket("k") == upstream  # one agent per id
        proxy = AgentProxy(upstream, uid=0, gid=0, mode=0o600)
        try:
            assert stat.S_IMODE(os.stat(proxy.path).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(proxy.path).st_mode)
            for _ in range(3):  # every connection is relayed on its own
                listed = _ssh_add_list(proxy.path)
                assert listed.returncode == 0 and listed.stdout.strip() == fingerprint
        finally:
            proxy.close()
        assert not proxy.path.parent.exists()
    finally:
        agents.close()
    assert _ssh_add_list(upstream).returncode != 0  # the agent is gone with its socket
    assert not Path(upstream).exists()


@requires_tool("ssh-agent", "ssh-add", "ssh-keygen")
def test_a_key_with_a_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    key, _ = _key(tmp_path, "locked", passphrase="secret phrase")
    agents = SshAgents.parse([f"k={key}"], {})
    try:
        with pytest.raises(BuildError, match=r"--ssh k: cannot load key .*locked") as err:
            agents.socket("k")
        assert "ssh-add KEY" in (err.value.hint or "")
    finally:
        agents.close()
