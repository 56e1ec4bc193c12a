"""The raw rtnetlink link deletion used when a container's host veth outlives its netns teardown."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runtime import _rtnl
from tests.conftest import requires_root

pytestmark = requires_root


def test_delete_link_removes_the_veth_pair_and_reports_a_missing_one() -> None:
    name, peer = f"rt{os.getpid() % 10**8}a", f"rt{os.getpid() % 10**8}b"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
    try:
        assert _rtnl.delete_link(name) is True
        assert not Path(f"/sys/class/net/{name}").exists() and not Path(f"/sys/class/net/{peer}").exists()
        assert _rtnl.delete_link(name) is False
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
