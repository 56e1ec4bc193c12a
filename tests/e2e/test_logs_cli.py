"""`pybuild logs` keeps every container's output, as docker does: foreground ones too, each line
with its stream and time (`--tail`, `--since`, `-t`)."""

from __future__ import annotations

import re
import time

from builder.commands.logs import parse_time
from tests.conftest import pybuild, requires_root


@requires_root
def test_logs_of_a_foreground_container(store: dict[str, str]) -> None:
    ran = pybuild("run", "--name", "lg-fg", "--network", "none", "busybox", "sh", "-c",
                  "echo one; echo two >&2; sleep 1.2; echo three", env=store)
    assert ran.stdout == "one\nthree\n" and ran.stderr == "two\n"  # the terminal still gets it as it comes
    logs = pybuild("logs", "lg-fg", env=store)
    assert logs.stdout == "one\nthree\n" and logs.stderr == "two\n"
    stamped = pybuild("logs", "-t", "--tail", "2", "lg-fg", env=store)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n", stamped.stdout), stamped.stdout
    assert re.fullmatch(r"\S+Z two\n", stamped.stderr)
    assert pybuild("logs", "--tail", "0", "lg-fg", env=store).stdout == ""
    assert pybuild("logs", "--since", "1h", "lg-fg", env=store).stdout == "one\nthree\n"
    first = stamped.stderr.split()[0]  # `two`, written before the sleep
    assert pybuild("logs", "--since", first, "lg-fg", env=store).stdout == "three\n"
    assert pybuild("logs", "--until", first, "lg-fg", env=store).stdout == "one\n"


@requires_root
def test_logs_of_a_detached_container_with_timestamps(store: dict[str, str]) -> None:
    cid = pybuild("run", "-d", "--network", "none", "busybox", "sh", "-c", "echo d1; echo d2 >&2", env=store)
    cid_s = cid.stdout.strip()
    for _ in range(100):
        if pybuild("logs", cid_s, env=store).stdout:
            break
        time.sleep(0.05)
    logs = pybuild("logs", "-t", cid_s, env=store)
    assert logs.stdout.endswith("Z d1\n") and logs.stderr.endswith("Z d2\n")


def test_since_forms() -> None:
    now = 1_800_000_000.0
    assert parse_time("10m", now) == now - 600 and parse_time("2h", now) == now - 7200
    assert parse_time("1700000000", now) == 1_700_000_000
    assert parse_time("2026-12-07T10:00:00Z", now) == parse_time("2026-12-07T10:00:00+00:00", now)
    bad = pybuild("logs", "--since", "yesterday-ish", "nope", check=False)
    assert bad.returncode == 1 and "invalid time 'yesterday-ish'" in bad.stderr and "Traceback" not in bad.stderr
