"""`pybuild run --add-host/--shm-size`: lines in /etc/hosts where Docker's run puts them (after its
defaults, before the container's own address), `host-gateway` as the bridge's gateway, /dev/shm
sized; bad values are one-line errors with docker run's exit code 125."""

from __future__ import annotations

from runtime.network import GATEWAY
from tests.conftest import pybuild, requires_root


@requires_root
def test_add_host_and_shm_size(store: dict[str, str]) -> None:
    ran = pybuild("run", "--rm", "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway", "--add-host",
                  "v6=[::1]", "--shm-size", "96m", "busybox", "sh", "-c", "cat /etc/hosts; df -k /dev/shm", env=store)
    lines = ran.stdout.splitlines()
    i = lines.index("10.1.2.3\tdb")
    assert lines[i + 1:i + 3] == [f"{GATEWAY}\tgw", "::1\tv6"]
    assert lines[i + 3].startswith("10.89.") and lines[i - 1] == "ff02::2\tip6-allrouters"  # its own address last
    assert " 98304 " in lines[-1]  # KiB
    assert " 65536 " in pybuild("run", "--rm", "--network", "none", "busybox", "df", "-k", "/dev/shm", env=store).stdout


def test_bad_add_host_or_shm_size() -> None:
    for flag, value, words in (("--add-host", "db", "invalid --add-host 'db': expected NAME:IP"),
                               ("--add-host", "db:10.1", "invalid IP address '10.1'"),
                               ("--shm-size", "0", "invalid --shm-size '0'"),
                               ("--shm-size", "lots", "invalid size 'lots'")):
        proc = pybuild("run", flag, value, "busybox", "true", check=False)
        assert proc.returncode == 125 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
