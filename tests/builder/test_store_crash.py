"""Crash safety: SIGKILL writers at random points; the store stays consistent."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from builder.oci.image import validate_image
from builder.store import Store
from tests.conftest import ROOT, pybuild

TRIALS = 50
AT_ONCE = 5  # writers running (and killed) together, sharing one store


def _start(root: Path, seeds: range) -> list[subprocess.Popen[str]]:
    """Start writers together; return once each has imported and is about to write."""
    procs = [subprocess.Popen([sys.executable, "-m", "tests.builder.crash_worker", str(root), str(seed)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for seed in seeds]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return procs


def _check(store: Store, read_layers: bool = False) -> int:
    """Every tag resolves to a valid image (whose layer blobs all verify); returns the number of tags."""
    tags = store.tags()
    for tag in tags:
        image = store.resolve(tag)
        validate_image(image)
        for layer in image.layers() if read_layers else ():
            with store.open_blob(layer.digest) as f:  # verify=True: raises on a bad hash at EOF
                while f.read(1 << 20):
                    pass
    for rec in store.images():
        store.image_by_id(rec.id)
    return len(tags)


def test_sigkill_at_random_points_leaves_a_consistent_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store.open(root)
    rng = random.Random(1234)
    killed_mid_write = 0
    for trial in range(0, TRIALS, AT_ONCE):
        procs = _start(root, range(trial, trial + AT_ONCE))
        deadline = time.monotonic() + rng.uniform(0.01, 0.25)
        for proc in sorted(procs, key=lambda _: rng.random()):
            time.sleep(max(0.0, deadline - time.monotonic()) + rng.uniform(0, 0.05))
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
        killed_mid_write += bool(list((root / "tmp").iterdir()))
        _check(store)
    assert killed_mid_write > 0, "no kill landed during a write: the test did not test anything"
    assert _check(store, read_layers=True) > 0
    proc = pybuild("images", env={"PYBUILD_ROOT": str(root)})
    assert "crash" in proc.stdout
    pybuild("prune", "-f", env={"PYBUILD_ROOT": str(root)})
    assert list((root / "tmp").iterdir()) == []
    assert _check(store, read_layers=True) > 0
    for blob in (root / "blobs" / "sha256").iterdir():
        store.read_blob("sha256:" + blob.name) if blob.stat().st_size < 1 << 16 else None
