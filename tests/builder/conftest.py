"""Fixtures for builder tests: stores with a busybox base image already in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builder.store_helpers import clone_store, import_busybox


@pytest.fixture(scope="session")
def busybox_store_template(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Path:
    """A store holding busybox:latest, made once per session (copy it before writing to it)."""
    root = tmp_path_factory.mktemp("busybox-store") / "store"
    import_busybox(root, busybox_tar)
    return root


@pytest.fixture
def busybox_store(store_root: Path, busybox_store_template: Path) -> Path:
    """A private store (PYBUILD_ROOT) for one test, holding busybox:latest."""
    return clone_store(busybox_store_template, store_root)
