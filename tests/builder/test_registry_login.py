"""`pybuild login` / `logout` against real registries (htpasswd and token auth), then using the login."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

from tests.builder.registry_server import PASSWORD, USER, Registry, needs_registry
from tests.builder.test_registry_pull_push import _unique_image
from tests.conftest import pybuild

pytestmark = needs_registry


def _login_push_pull(reg: Registry, cfg: Path, busybox_store: Path, tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(cfg)}
    name = f"{reg.host}/team/{uuid.uuid4().hex[:8]}:1"
    _unique_image(busybox_store, tmp_path, name)
    denied = pybuild("push", name, check=False, env={**env, "PYBUILD_REGISTRY_RETRIES": "0"})
    assert denied.returncode == 1 and "pybuild login" in denied.stderr and "Traceback" not in denied.stderr

    wrong = pybuild("login", "-u", USER, "--password-stdin", reg.host, input=b"nope\n", check=False, env=env)
    assert wrong.returncode == 1 and "invalid username or password" in wrong.stderr
    assert not (cfg / "config.json").exists()

    ok = pybuild("login", "-u", USER, "--password-stdin", reg.host, input=f"{PASSWORD}\n".encode(), env=env)
    assert "Login Succeeded" in ok.stdout and PASSWORD not in ok.stdout + ok.stderr
    path = cfg / "config.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert reg.host in json.loads(path.read_text())["auths"]

    pybuild("push", name, env=env)
    pybuild("pull", name, env={**env, "PYBUILD_ROOT": str(tmp_path / "other")})

    assert "Removing login credentials" in pybuild("logout", reg.host, env=env).stdout
    assert reg.host not in json.loads(path.read_text())["auths"]
    assert "Not logged in" in pybuild("logout", reg.host, env=env).stdout


def test_login_basic(basic_registry: Registry, docker_config: Path, busybox_store: Path, tmp_path: Path) -> None:
    _login_push_pull(basic_registry, docker_config, busybox_store, tmp_path)


def test_login_token(token_registry: Registry, docker_config: Path, busybox_store: Path, tmp_path: Path) -> None:
    _login_push_pull(token_registry, docker_config, busybox_store, tmp_path)
