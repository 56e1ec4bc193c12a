"""Images through `pybuild serve` with the real docker CLI: images (filters), inspect, history, tag,
rmi, save and load, push and pull through the loopback registry (and login to one with basic
auth), image prune; `/events` records what happened."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

from tests.builder.registry_server import USER, PASSWORD, Registry
from tests.conftest import requires_root
from tests.serve.conftest import Server, json_lines, needs_docker, write_context

pytestmark = [needs_docker, requires_root]


def _build(server: Server, tmp_path: Path, tag: str, text: str, *extra: str) -> str:
    ctx = write_context(tmp_path / tag.replace(":", "-").replace("/", "-"), {"Dockerfile": text})
    return server.docker("build", "-q", "-t", tag, *extra, str(ctx)).stdout.strip()


def test_list_inspect_history_tag_rmi(server: Server, tmp_path: Path) -> None:
    image_id = _build(server, tmp_path, "img:1", "FROM busybox\nLABEL team=a\nRUN echo x > /x\n")
    listed = server.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert f"img:1 {image_id[7:19]}" in listed
    assert server.docker("images", "-q", "--filter", "label=team=a").stdout.split() == [image_id[7:19]]
    assert server.docker("images", "-q", "--filter", "label=team=b").stdout.strip() == ""
    assert "img" in server.docker("images", "--filter", "reference=im*").stdout
    info = json.loads(server.docker("image", "inspect", "img:1").stdout)[0]
    assert info["Id"] == image_id and info["RepoTags"] == ["img:1"] and info["Config"]["Labels"] == {"team": "a"}
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 2
    history = server.docker("history", "--no-trunc", "img:1").stdout
    assert "echo x > /x" in history and image_id in history
    server.docker("tag", "img:1", "img:alias")
    assert json.loads(server.docker("inspect", "img:alias").stdout)[0]["Id"] == image_id
    rows = json.loads(server.pybuild("images", "--json").stdout)
    assert {"img:1", "img:alias"} <= {f"{r['Repository']}:{r['Tag']}" for r in rows if r["ID"] == image_id}
    proc = server.docker("rmi", image_id, check=False)  # two names: dockerd wants -f
    assert proc.returncode == 1 and "must be forced" in proc.stderr
    out = server.docker("rmi", "img:alias").stdout
    assert out.strip() == "Untagged: img:alias"
    out = server.docker("rmi", "img:1").stdout
    assert "Untagged: img:1" in out and f"Deleted: {image_id}" in out
    assert server.docker("inspect", "img:1", check=False).returncode == 1
    proc = server.docker("rmi", "img:1", check=False)
    assert proc.returncode == 1 and "No such image: img:1" in proc.stderr


def test_rmi_of_an_image_a_container_uses(server: Server, tmp_path: Path) -> None:
    _build(server, tmp_path, "used:1", "FROM busybox\nRUN echo u > /u\n")
    server.docker("create", "--name", "user1", "used:1", "true")
    proc = server.docker("rmi", "used:1", check=False)
    assert proc.returncode == 1 and "container" in proc.stderr
    server.docker("rm", "user1")
    server.docker("rmi", "used:1")


def test_save_and_load(server: Server, tmp_path: Path) -> None:
    image_id = _build(server, tmp_path, "saved:1", "FROM busybox\nRUN echo saved > /s\n")
    archive = tmp_path / "saved.tar"
    server.docker("save", "-o", str(archive), "saved:1")
    assert archive.stat().st_size > 100_000
    server.docker("rmi", "saved:1")
    out = server.docker("load", "-i", str(archive)).stdout
    assert "Loaded image: saved:1" in out
    assert json.loads(server.docker("inspect", "saved:1").stdout)[0]["Id"] == image_id
    proc = server.docker("load", input=b"not an archive at all" * 10, check=False)
    assert proc.returncode == 1 and server.alive()


def test_push_and_pull_through_the_registry(server: Server, registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.host}/serve/pushed:1"
    image_id = _build(server, tmp_path, ref, "FROM busybox\nRUN echo pushed > /p\n")
    out = server.docker("push", ref).stdout
    assert f"The push refers to repository [{registry.host}/serve/pushed]" in out and "digest: sha256:" in out
    assert re.search(r"^[0-9a-f]{12}: Pushed$", out, re.M), out  # a line per layer, as dockerd's push prints
    server.docker("tag", ref, f"{registry.host}/serve/pushed:2")
    status, _, body = server.api("POST", "/images/" + quote(f"{registry.host}/serve/pushed", safe="") + "/push?tag=2")
    messages = json_lines(body)
    # the registry has every layer: each is reported, before the digest line that ends the push
    done = [m for m in messages if m.get("status") == "Layer already exists"]
    assert status == 200 and done and all(re.fullmatch(r"[0-9a-f]{12}", m["id"]) for m in done), messages
    assert messages.index(done[-1]) < next(i for i, m in enumerate(messages) if "digest:" in m.get("status", ""))
    server.docker("rmi", f"{registry.host}/serve/pushed:2")
    server.docker("rmi", ref)
    out = server.docker("pull", ref).stdout
    assert "Downloaded newer image" in out and f"{ref}" in out
    assert ": Already exists" in out or ": Pull complete" in out  # per-layer progress, streamed as it pulls
    assert json.loads(server.docker("inspect", ref).stdout)[0]["Id"] == image_id
    assert "Image is up to date" in server.docker("pull", ref).stdout
    proc = server.docker("pull", f"{registry.host}/serve/absent:1", check=False)
    assert proc.returncode == 1 and "absent" in proc.stderr
    proc = server.docker("push", f"{registry.host}/serve/never-built:1", check=False)
    assert proc.returncode == 1 and "does not exist locally" in proc.stderr


def test_login_and_push_with_credentials(server: Server, basic_registry: Registry, tmp_path: Path) -> None:
    host = basic_registry.host
    proc = server.docker("login", host, "-u", USER, "--password-stdin", input=b"wrong\n", check=False)
    assert proc.returncode == 1 and "401" in proc.stderr
    server.docker("login", host, "-u", USER, "--password-stdin", input=PASSWORD.encode() + b"\n")
    assert host in json.loads((server.config / "config.json").read_text())["auths"]
    ref = f"{host}/serve/private:1"
    _build(server, tmp_path, ref, "FROM busybox\nRUN echo private > /p\n")
    assert "digest: sha256:" in server.docker("push", ref).stdout  # X-Registry-Auth from the CLI's login
    server.docker("rmi", ref)
    assert "Downloaded newer image" in server.docker("pull", ref).stdout


def test_prune_and_events(server: Server, tmp_path: Path) -> None:
    since = time.time()
    dangling = _build(server, tmp_path, "dangle:1", "FROM busybox\nRUN echo d1 > /d\n")
    _build(server, tmp_path, "dangle:1", "FROM busybox\nRUN echo d2 > /d\n")  # the first loses its name
    assert dangling[7:19] in server.docker("images", "-q", "--filter", "dangling=true").stdout
    out = server.docker("image", "prune", "-f").stdout
    assert f"deleted: {dangling}" in out
    assert server.docker("inspect", dangling, check=False).returncode == 1
    events = server.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}",
                           "--format", "{{json .}}").stdout
    kinds = [(e["Type"], e["Action"]) for e in map(json.loads, events.splitlines())]
    assert ("image", "tag") in kinds and ("image", "build") in kinds and ("image", "delete") in kinds
