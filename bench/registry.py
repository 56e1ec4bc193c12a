"""Benchmark: push and pull a ~300 MB image with the local registry, against `skopeo copy`.

    python3 bench/registry.py [--size-mb 300] [--layers 3] [--runs 3] [--dir DIR]

Targets (issue 7): push <= 1.2x `skopeo copy oci:LAYOUT docker://...` of the same blobs; pull into
an empty store <= 1.2x `skopeo copy docker://... oci:DIR`; re-push of an unchanged image < 0.3 s
(the whole `pybuild push` command, interpreter start-up included).

The image is made once (cached in DIR, default /tmp/pybuild-bench-registry): busybox plus layers
of 3/4-random, 1/4-text files, gzip-compressed by the store. The peer reads the same blobs from
an OCI layout of hard links, so both sides move identical bytes. Every measurement gets its own
fresh docker-registry on 127.0.0.1 (so no side can mount a blob it pushed before). Medians of
`--runs` runs are printed with their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures"))

from tests.builder.registry_server import start_registry  # noqa: E402


def make_store(base: Path, size_mb: int, layers: int) -> Path:
    """A store holding `bench:1` (busybox + `layers` layers totalling ~size_mb), made once."""
    import baseimages

    from builder.oci import mutate
    from builder.oci.image import EMPTY
    from builder.oci.model import History
    from builder.store import Store

    root = base / "store"
    if (root / "images.json").exists():
        return root
    store = Store.open(root)
    tar = baseimages.busybox_rootfs_tar(base / "busybox.tar")
    with open(tar, "rb") as f:
        image = mutate.append_layers(EMPTY, store.blob_layer(store.commit_tar(f, epoch=0)))
    per_layer = size_mb * (1 << 20) // layers
    text = (b"pybuild registry benchmark line of text, compressible. " * 20)[:1000] + b"\n"
    for i in range(layers):
        d = base / f"layer{i}"
        (d / "data").mkdir(parents=True, exist_ok=True)
        for j in range(per_layer // (4 << 20)):
            with open(d / "data" / f"f{i}-{j}.bin", "wb") as f:
                f.write(os.urandom(3 << 20))
                f.write(text * ((1 << 20) // len(text)))
        rec = store.commit_dir(d, epoch=0)
        image = mutate.append_layers(image, store.blob_layer(rec), history=[History(created_by=f"layer {i}")])
        shutil.rmtree(d)
    store.put_image(image, ["bench:1"])
    return root


def make_layout(store_root: Path, dest: Path) -> None:
    """An OCI layout of the same image, blobs hard-linked from the store (skopeo's source)."""
    from builder.store import Store

    if (dest / "index.json").exists():
        return
    store = Store.open(store_root)
    image = store.resolve("bench:1")
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest in [image.id, image.digest, *(l.digest for l in image.layers())]:
        target = blobs / digest.split(":", 1)[1]
        if not target.exists():
            os.link(store.blob_path(digest), target)
    raw = image.raw_manifest()
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": image.manifest().media_type, "digest": str(image.digest), "size": len(raw),
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    # as installed for users: bytecode cached (a session may set PYTHONDONTWRITEBYTECODE; the
    # first pybuild run of each round writes the .pyc files the timed re-push then reads)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**base, **(env or {})})
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/pybuild-bench-registry")
    args = ap.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    store_root = make_store(base, args.size_mb, args.layers)
    layout = base / "layout"
    make_layout(store_root, layout)
    size = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
    print(f"image: {size / 1e6:.0f} MB in {args.layers + 1} layers (gzip), {args.runs} runs each")
    pybuild = [sys.executable, "-m", "builder"]
    results: dict[str, list[float]] = {k: [] for k in ("push", "skopeo push", "pull", "skopeo pull", "re-push",
                                                       "python start")}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            work = Path(tmp)
            reg = start_registry(work / "reg")
            try:
                # a fresh store copy (hard links) so no mount hints from earlier runs apply
                store = work / "store"
                shutil.copytree(store_root, store, copy_function=os.link, ignore=shutil.ignore_patterns("registry.*"))
                env = {"PYBUILD_ROOT": str(store)}
                name = f"{reg.host}/bench/pybuild:1"
                results["push"].append(timed([*pybuild, "push", "--progress", "quiet", "--from", "bench:1", name], env))
                for _ in range(5):  # short runs are the noisiest on a shared machine: several of each
                    results["re-push"].append(timed([*pybuild, "push", "--progress", "quiet", "--from", "bench:1", name], env))
                    results["python start"].append(timed([sys.executable, "-c", "pass"]))  # the floor of any CLI run
                results["skopeo push"].append(timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                                     f"oci:{layout}:bench", f"docker://{reg.host}/bench/skopeo:1"]))
                empty = {"PYBUILD_ROOT": str(work / "empty")}
                results["pull"].append(timed([*pybuild, "pull", "-q", name], empty))
                results["skopeo pull"].append(timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                                     f"docker://{name}", f"oci:{work / 'skopeo-out'}:bench"]))
            finally:
                reg.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        print(f"{k:12s} {v:7.3f} s  ({', '.join(f'{x:.3f}' for x in results[k][:6])})")
    push_ratio = med["push"] / med["skopeo push"]
    pull_ratio = med["pull"] / med["skopeo pull"]
    print(f"push / skopeo copy:  {push_ratio:.2f}x (target <= 1.2x)  {size / med['push'] / 1e6:.0f} MB/s")
    print(f"pull / skopeo copy:  {pull_ratio:.2f}x (target <= 1.2x)  {size / med['pull'] / 1e6:.0f} MB/s")
    print(f"re-push:             {med['re-push']:.3f} s median, {min(results['re-push']):.3f} s best (target < 0.3 s; "
          f"bare interpreter start-up: {med['python start']:.3f} s median; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
