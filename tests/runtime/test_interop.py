"""Interoperability: an image built by pybuild runs under runc, from an OCI bundle made by the
standard tools (`pybuild save --format oci`, `umoci unpack` for the rootfs, `runc spec` for the
config, adjusted to the image's config), with the same output as `pybuild run`."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import pybuild, requires_root, requires_tool

pytestmark = [requires_root, requires_tool("runc", "umoci")]

DOCKERFILE = """\
FROM busybox:latest
RUN mkdir -p /app/data && echo hello > /app/data/greeting && chown -R 1234:1234 /app && chmod 750 /app/data \\
 && rm /bin/vi
ENV GREETING="hi there" APP=/app
WORKDIR /app
USER 1234:1234
"""
# what both runtimes must agree on: user, cwd, environment, files, owners, modes, a deleted file, the root
SCRIPT = ("id -u; id -g; pwd; echo \"$GREETING|$APP|$PATH\"; cat data/greeting; "
          "stat -c '%n %u %g %a' /app/data; stat -c '%n %u %g %a %s' /app/data/greeting; test -e /bin/vi && echo vi || echo no-vi; "
          "ls -a /; cat /etc/os-release; echo written > /app/new && cat /app/new")


@pytest.fixture(scope="module")
def store(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"PYBUILD_ROOT": str(tmp_path_factory.mktemp("interop-store"))}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    ctx = tmp_path_factory.mktemp("interop-ctx")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    pybuild("build", "-q", "-t", "interop:1", str(ctx), env=env)
    return env


def _bundle(store: dict[str, str], tmp_path: Path) -> Path:
    """An OCI runtime bundle for interop:1: rootfs by umoci, config.json by `runc spec` plus the image config."""
    archive, layout, bundle = tmp_path / "image.tar", tmp_path / "layout", tmp_path / "bundle"
    pybuild("save", "--format", "oci", "-o", str(archive), "interop:1", env=store)
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    unpack = subprocess.run(["umoci", "unpack", "--image", f"{layout}:interop:1", str(bundle)],
                            capture_output=True, text=True)
    assert unpack.returncode == 0, unpack.stderr
    (bundle / "config.json").unlink()  # umoci's own; the bundle's config comes from `runc spec`
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    cfg = json.loads(pybuild("inspect", "interop:1", env=store).stdout)[0]["Config"]
    uid, _, gid = cfg["User"].partition(":")
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=["sh", "-c", SCRIPT], env=cfg["Env"], cwd=cfg["WorkingDir"],
                           user={"uid": int(uid), "gid": int(gid)})
    spec["root"] = {"path": "rootfs", "readonly": False}
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def test_image_runs_the_same_under_runc(store: dict[str, str], tmp_path: Path) -> None:
    ours = pybuild("run", "--rm", "--network", "none", "interop:1", "sh", "-c", SCRIPT, env=store)
    bundle = _bundle(store, tmp_path)
    name = f"pybuild-interop-{os.getpid()}"
    try:
        theirs = subprocess.run(["runc", "run", "-b", str(bundle), name], capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["runc", "delete", "-f", name], capture_output=True)
    assert theirs.returncode == 0, theirs.stderr
    assert "hi there|/app|" in ours.stdout and "no-vi" in ours.stdout and "/app/data 1234 1234 750" in ours.stdout
    assert theirs.stdout == ours.stdout
