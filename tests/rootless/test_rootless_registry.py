"""Registries, cache export/import and analysis as an unprivileged user; the user's store is private."""

from __future__ import annotations

import json
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from tests.builder.registry_server import Registry, needs_registry
from tests.rootless.conftest import Runner

pytestmark = needs_registry


def fresh_store(user: Runner, user_store: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A new store of the user's holding the same base images (loaded from a save of `user_store`)."""
    work = user.workdir()
    user.pybuild("save", "-o", str(work / "bases.tar"), "busybox:latest", "caps:1", env=user_store)
    env = {"PYBUILD_ROOT": str(work / "store")}
    user.pybuild("load", "-i", str(work / "bases.tar"), env=env)
    return work, env


def test_push_pull_analyze_and_cache_through_a_registry(user: Runner, user_store: dict[str, str],
                                                       registry: Registry) -> None:
    ctx = user.code / "fixtures/rootless"
    ref = f"{registry.host}/rootless/{uuid.uuid4().hex[:8]}:1"
    cache = f"{registry.host}/rootless/cache-{uuid.uuid4().hex[:8]}:ci"
    user.pybuild("build", "-t", ref, "--cache-to", f"type=registry,ref={cache},mode=max", str(ctx), env=user_store)
    pushed = json.loads(user.pybuild("inspect", ref, env=user_store).stdout)[0]["RootFS"]["diff_ids"]
    user.pybuild("push", ref, env=user_store)
    work, env = fresh_store(user, user_store)
    try:
        user.pybuild("pull", ref, env=env)
        assert json.loads(user.pybuild("inspect", ref, env=env).stdout)[0]["RootFS"]["diff_ids"] == pushed
        owners = user.pybuild("run", "--rm", "--network", "none", ref, "stat", "-c", "%u:%g %A", "/home/app/f.txt",
                              "/bin/busybox", env=env).stdout.split("\n")
        assert owners[0] == "1000:1000 -rw-r--r--" and owners[1].startswith("0:0 -rwsr-xr-x"), owners
        report = json.loads(user.pybuild("analyze", "--json", ref, env=env).stdout)
        assert len(report["layers"]) == len(pushed), report.keys()
        # the cache exported rootless serves a fresh rootless store: every step is a hit
        out = user.pybuild("build", "--progress", "plain", "--cache-from", f"type=registry,ref={cache}", str(ctx),
                           env=env).stderr
        assert out.count("CACHED") == 7, out  # steps 2/8 to 8/8
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_default_store_is_private_to_the_user(user: Runner, user_store: dict[str, str]) -> None:
    """Without PYBUILD_ROOT the store is ~/.local/share/pybuild, made 0700 and owned by the user."""
    store = user.home / ".local/share/pybuild"
    shutil.rmtree(store, ignore_errors=True)
    user.pybuild("images")
    st = store.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)
    assert "store: " + str(store) in user.pybuild("info").stdout
    shutil.rmtree(store, ignore_errors=True)
