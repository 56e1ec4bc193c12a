"""Writes to a store in a loop until killed (for the SIGKILL crash-safety test).

    python3 -m tests.builder.crash_worker STORE_ROOT SEED
Prints "ready" once imported; then commits layers, stores images and moves tags forever.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

from builder.oci import mutate
from builder.oci.image import EMPTY
from builder.oci.model import History
from builder.store import Store


def main(root: str, seed: int) -> None:
    rng = random.Random(seed)
    store = Store.open(root)
    work = Path(tempfile.mkdtemp(prefix="crash-worker-"))
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        upper = work / f"u{i}"
        upper.mkdir()
        for n in range(rng.randint(1, 4)):
            (upper / f"f{n}").write_bytes(os.urandom(rng.randint(0, 300_000)))
        with store.lease():
            rec = store.commit_dir(upper, compression=rng.choice(["gzip", "zstd"]))
            image = mutate.append_layers(EMPTY, store.layer(rec), history=[History(created_by=f"step {i}")])
            image = mutate.with_created(image, i)
            store.put_image(image, [f"crash{seed % 3}:{rng.randint(0, 4)}"])
            if rng.random() < 0.3:
                store.tag(f"crash-copy:{rng.randint(0, 2)}", image.id)
            if os.geteuid() == 0 and rng.random() < 0.3:
                store.snapshot([rec.diff_id])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
