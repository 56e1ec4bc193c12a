"""Real applications from Debian packages, built by pybuild, run with -p and answering on a
loopback port: nginx (a static page), a Python WSGI app (Debian's python3-jinja2, no pip) and
Tomcat (Debian's tomcat10, a JSP page: fixtures/examples/tomcat/Dockerfile.debian, what
`make demo` builds). They need the Debian mirror for apt-get: skipped only when none answers."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, baseimages, pybuild, requires_root

pytestmark = requires_root


@pytest.fixture(scope="module")
def mirror() -> str:
    url = baseimages.debian_mirror()
    if not baseimages.mirror_answers(url):
        pytest.skip(f"no Debian mirror answers at {url}: apt-get cannot install the applications")
    return url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(port: int, path: str, wait: float) -> str:
    deadline = time.monotonic() + wait
    while True:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize("app, dockerfile, inner, wait, want", [
    ("nginx", "fixtures/apps/nginx/Dockerfile", 80, 30, "<h1>nginx on Debian, built by pybuild</h1>"),
    ("pyweb", "fixtures/apps/pyweb/Dockerfile", 8000, 30, "<h1>Hello from Python 3.11"),
    ("tomcat", "fixtures/examples/tomcat/Dockerfile.debian", 8080, 120, "Hello from Apache Tomcat/10"),
])
def test_real_application_answers_on_loopback(mirror: str, debian_store: dict[str, str], app: str, dockerfile: str, inner: int,
                                              wait: float, want: str) -> None:
    path = FIXTURES.parent / dockerfile
    pybuild("build", "-t", f"{app}:debian", "-f", str(path), str(path.parent), env=debian_store, timeout=900)
    port = _free_port()
    cid = pybuild("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:{inner}", f"{app}:debian", env=debian_store).stdout.strip()
    try:
        assert want in _fetch(port, "/", wait)
    finally:
        pybuild("stop", cid, env=debian_store, check=False)
