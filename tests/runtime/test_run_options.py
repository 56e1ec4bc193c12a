"""`pybuild run` flags turned into a container as `docker run` turns them (checked against a
private dockerd 20.10 by hand; the end-to-end runs are in test_cli.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.containers import (RunOptionError, RunOptions, assign_port, parse_limits, parse_publish,
                                process_spec)
from runtime.spec import Limits, PortMapping

IMAGE = {"Env": ["PATH=/bin", "B=from-image"], "Cmd": ["sh"]}


def _env(opts: RunOptions) -> dict[str, str]:
    return dict(process_spec(IMAGE, opts).env)


def test_env_flags_and_files_as_docker_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "host value")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    (tmp_path / "env").write_text("# comment\n\nFOO=bar baz  \n  LEAD=x\nEMPTY=\nFROM_HOST\nQ=\"q\"\nUNSET_HERE\n")
    env = _env(RunOptions(env=("A=1", "B", "UNSET_HERE", "C="), env_files=(str(tmp_path / "env"),)))
    assert env == {"PATH": "/bin", "B": "from-image", "FOO": "bar baz  ", "LEAD": "x", "EMPTY": "",
                   "FROM_HOST": "host value", "Q": '"q"', "A": "1", "C": ""}


@pytest.mark.parametrize("flag, text", [("=x", "invalid environment variable: =x"), ("", "invalid environment")])
def test_bad_env_flag_is_an_error(flag: str, text: str) -> None:
    with pytest.raises(RunOptionError, match=text):
        _env(RunOptions(env=(flag,)))


def test_bad_env_file_line_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "env").write_text("OK=1\nBAD KEY=1\n")
    with pytest.raises(RunOptionError, match=f"^{tmp_path}/env:2: invalid environment variable 'BAD KEY=1'$"):
        _env(RunOptions(env_files=(str(tmp_path / "env"),)))


def test_limits_follow_dockers_rules() -> None:
    assert parse_limits(RunOptions(memory="0", cpus=0.0, pids_limit=0)) == Limits()  # 0: no limit
    assert parse_limits(RunOptions(pids_limit=-1)) == Limits()
    assert parse_limits(RunOptions(memory="6m", cpus=0.01, pids_limit=5)) == Limits(6 << 20, 0.01, 5)
    for opts, text in [(RunOptions(memory="1k"), "minimum memory limit allowed is 6MB"),
                       (RunOptions(memory="lots"), "invalid size"),
                       (RunOptions(cpus=-1), "range of CPUs is from 0.01 to"),
                       (RunOptions(cpus=0.001), "range of CPUs"),
                       (RunOptions(cpus=float((os.cpu_count() or 1) + 1)), "range of CPUs")]:
        with pytest.raises(RunOptionError, match=text):
            parse_limits(opts)


def test_publish_forms() -> None:
    assert parse_publish("8080:80") == PortMapping(8080, 80, "0.0.0.0", "tcp")
    assert parse_publish("127.0.0.1:53:53/udp") == PortMapping(53, 53, "127.0.0.1", "udp")
    assert parse_publish("127.0.0.1::80") == PortMapping(0, 80, "127.0.0.1", "tcp")
    assert parse_publish("80") == PortMapping(0, 80, "0.0.0.0", "tcp")
    for bad in ("abc", "80:", "99999:80", "80:80/sctp", "localhost:80:80", "1:2:3:4", "80:0"):
        with pytest.raises(RunOptionError, match="invalid port mapping"):
            parse_publish(bad)


def test_a_port_without_host_port_gets_a_free_one() -> None:
    port = assign_port(parse_publish("127.0.0.1::80"))
    assert port.host_ip == "127.0.0.1" and port.container_port == 80 and port.host_port > 0
    assert assign_port(PortMapping(8080, 80)) == PortMapping(8080, 80)


def test_containers_are_listed_newest_created_first(tmp_path: Path) -> None:
    from runtime.containers import Containers
    from runtime.spec import ProcessSpec

    store = Containers(tmp_path)
    older = store.create("sha256:" + "0" * 64, "img", ProcessSpec(("true",)), [])
    newer = store.create("sha256:" + "0" * 64, "img", ProcessSpec(("true",)), [])
    for c, when in ((older, 1000), (newer, 2000)):
        os.utime(c.path / "config.json", (when, when))
        os.utime(c.path, (when, when))
    older._set_state(status="exited", exit_code=0)  # a later change to the older one (docker ps keeps its place)
    assert [c.id for c in store.list()] == [newer.id, older.id]


def test_hostname_is_the_short_id_or_the_hosts_on_its_network(tmp_path: Path) -> None:
    from runtime.containers import Containers
    from runtime.spec import NetworkMode, ProcessSpec

    store = Containers(tmp_path)
    own = store.create("sha256:" + "0" * 64, "img", ProcessSpec(("true",)), [], network=NetworkMode.NONE)
    host = store.create("sha256:" + "0" * 64, "img", ProcessSpec(("true",)), [], network=NetworkMode.HOST)
    named = store.create("sha256:" + "0" * 64, "img", ProcessSpec(("true",), hostname="h1"), [],
                         network=NetworkMode.HOST)
    assert own.config.process.hostname == own.id[:12]
    assert host.config.process.hostname == os.uname().nodename
    assert named.config.process.hostname == "h1"


def test_a_container_removed_meanwhile_records_nothing_and_does_not_fail(tmp_path: Path) -> None:
    import shutil

    from runtime.containers import Containers
    from runtime.spec import ProcessSpec

    c = Containers(tmp_path).create("sha256:" + "0" * 64, "img", ProcessSpec(("true",)), [])
    shutil.rmtree(c.path)  # `rm -f` from another pybuild while this one still runs it
    assert c._set_state(status="exited", exit_code=137).exit_code == 137
    assert not c.path.exists()
