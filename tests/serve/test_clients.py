"""Other Engine API clients against `pybuild serve`: docker-py's high-level client (build, images,
containers, push, pull) and testcontainers-python starting a container from an image pybuild built."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.builder.registry_server import Registry
from tests.conftest import requires_root
from tests.serve.conftest import Server, fetch, needs_docker, write_context

pytestmark = [needs_docker, requires_root]


@pytest.fixture
def client(server: Server) -> Iterator[object]:
    import docker

    c = docker.DockerClient(base_url=server.url, version="auto", timeout=120)
    yield c
    c.close()


def test_docker_py_build_run_push_pull(client, server: Server, registry: Registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nARG A\nRUN echo $A > /a\nCMD cat /a\n"})
    image, logs = client.images.build(path=str(ctx), tag="py:1", buildargs={"A": "from-docker-py"}, rm=True)
    assert "py:1" in image.tags
    assert any("Successfully built" in entry.get("stream", "") for entry in logs)
    assert client.containers.run("py:1", remove=True) == b"from-docker-py\n"
    c = client.containers.run("py:1", "sh -c 'echo up; sleep 30'", detach=True, name="pyc")
    deadline = time.monotonic() + 5
    while b"up" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.logs() == b"up\n"
    c.reload()
    assert c.status == "running" and c.name == "pyc"
    c.stop(timeout=1)
    assert c.wait()["StatusCode"] in (137, 143)
    c.remove()
    assert "pyc" not in [x.name for x in client.containers.list(all=True)]
    repo = f"{registry.host}/serve/py"
    image.tag(repo, "2")
    pushed = list(client.images.push(repo, "2", stream=True, decode=True))
    assert not [p for p in pushed if "error" in p] and any("digest" in p.get("status", "") for p in pushed)
    client.images.remove(f"{repo}:2")
    pulled = client.images.pull(repo, tag="2")
    assert pulled.id == image.id
    with pytest.raises(__import__("docker").errors.ImageNotFound):
        client.images.get("never-there:1")


def test_testcontainers_starts_a_pybuild_image(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = write_context(tmp_path / "tc", {"Dockerfile": "FROM busybox\nRUN echo served-by-pybuild > /index.html\n"
                                                        "CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\n"})
    server.docker("build", "-t", "tc-web:1", str(ctx))
    monkeypatch.setenv("DOCKER_HOST", server.url)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # the reaper is an image from Docker Hub
    from testcontainers.core.container import DockerContainer

    with DockerContainer("tc-web:1").with_exposed_ports(80) as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(80)
        assert fetch(f"http://{host}:{port}/index.html") == b"served-by-pybuild\n"
        cid = container.get_wrapped_container().id
    assert cid not in server.docker("ps", "-a", "--no-trunc").stdout  # testcontainers removed it
