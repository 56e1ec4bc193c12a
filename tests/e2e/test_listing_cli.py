"""`--format` and `--filter` on images, inspect, history and ps, as docker's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import pybuild, requires_root


def _build(store: dict[str, str], tmp_path: Path, tag: str, dockerfile: str) -> str:
    ctx = tmp_path / tag.replace(":", "-")
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return pybuild("build", "-q", "-t", tag, str(ctx), env=store).stdout.strip()


def test_images_format_and_filters(store: dict[str, str], tmp_path: Path) -> None:
    first = _build(store, tmp_path, "lst-a:1", "FROM busybox\nLABEL team=core\nRUN echo a > /a\n")
    second = _build(store, tmp_path, "lst-b:1", "FROM busybox\nLABEL team=web\nRUN echo b > /b\n")
    out = pybuild("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "-f", "reference=lst-*", env=store).stdout
    assert out.splitlines() == [f"lst-b:1 {second[7:19]}", f"lst-a:1 {first[7:19]}"]
    assert pybuild("images", "-q", "-f", "label=team=core", env=store).stdout.split() == [first[7:19]]
    assert pybuild("images", "-q", "-f", "label=team", "-f", "since=lst-a:1", env=store).stdout.split() == [second[7:19]]
    assert pybuild("images", "-q", "-f", "before=lst-b:1", "-f", "reference=lst-*", env=store).stdout.split() == [first[7:19]]
    table = pybuild("images", "--format", "table {{.Repository}}\\t{{.ID}}", "-f", "reference=lst-a", env=store).stdout
    assert table == f"REPOSITORY   IMAGE ID\nlst-a        {first[7:19]}\n"
    rows = [json.loads(line) for line in pybuild("images", "--format", "json", "-f", "reference=lst-a",
                                                  env=store).stdout.splitlines()]
    assert [r["Repository"] for r in rows] == ["lst-a"] and rows[0]["Size"].endswith("MB")
    pybuild("tag", "lst-a:1", "lst-c:1", env=store)
    pybuild("rmi", "lst-a:1", "lst-c:1", env=store)  # the last name goes: the image with it
    assert first[7:19] not in pybuild("images", "-q", "-f", "dangling=true", env=store).stdout
    bad = pybuild("images", "-f", "colour=red", env=store, check=False)
    assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr


def test_inspect_and_history_format(store: dict[str, str], tmp_path: Path) -> None:
    image = _build(store, tmp_path, "fmt:1", "FROM busybox\nENV A=1 B=2\nRUN echo x > /x\n")
    out = pybuild("inspect", "-f", "{{.Id}} {{index .RepoTags 0}} {{range .Config.Env}}{{.}};{{end}}",
                  "fmt:1", env=store).stdout
    assert out == f"{image} fmt:1 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin;A=1;B=2;\n"
    assert json.loads(pybuild("inspect", "-f", "{{json .Config.Env}}", "fmt:1", env=store).stdout)[-1] == "B=2"
    hist = pybuild("history", "--format", "{{.CreatedBy}}|{{.Size}}", "fmt:1", env=store).stdout.splitlines()
    assert hist[0].startswith("RUN /bin/sh -c echo x > /x") and hist[0].endswith("|2.05kB")
    bad = pybuild("inspect", "-f", "{{.Id", "fmt:1", env=store, check=False)
    assert bad.returncode == 1 and "unclosed action" in bad.stderr and "Traceback" not in bad.stderr


@requires_root
def test_ps_format_and_filters(store: dict[str, str]) -> None:
    pybuild("run", "--name", "lst-ok", "--network", "none", "busybox", "true", env=store)
    pybuild("run", "--name", "lst-bad", "--network", "none", "busybox", "sh", "-c", "exit 3", env=store, check=False)
    out = pybuild("ps", "-a", "--format", "{{.Names}} {{.State}}", "-f", "name=lst-", env=store).stdout
    assert sorted(out.splitlines()) == ["lst-bad exited", "lst-ok exited"]
    assert pybuild("ps", "--format", "{{.Names}}", "-f", "exited=3", env=store).stdout.split() == ["lst-bad"]
    table = pybuild("ps", "-a", "--format", "table {{.Names}}\\t{{.Image}}", "-f", "name=lst-ok", env=store).stdout
    assert table.splitlines() == ["NAMES    IMAGE", "lst-ok   busybox"]
    assert pybuild("ps", "-aq", "-f", "ancestor=busybox", "-f", "name=lst-ok", env=store).stdout.strip()
    assert pybuild("ps", "-aq", "-f", "ancestor=nothing", "-f", "name=lst-ok", env=store).stdout.strip() == ""


@requires_root
def test_ps_shows_exposed_ports_and_rm_takes_v(store: dict[str, str], tmp_path: Path) -> None:
    _build(store, tmp_path, "exposed:1", "FROM busybox\nEXPOSE 80 53/udp\nCMD [\"sleep\", \"30\"]\n")
    cid = pybuild("run", "-d", "--network", "none", "exposed:1", env=store).stdout.strip()
    try:
        assert pybuild("ps", "--format", "{{.Ports}}", "-f", f"id={cid}", env=store).stdout == "53/udp, 80/tcp\n"
    finally:
        pybuild("rm", "-f", "-v", cid, env=store)
    assert cid[:12] not in pybuild("ps", "-aq", env=store).stdout
