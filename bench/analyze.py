"""Benchmark: `pybuild analyze` on a 1 GB, 50,000-file, 10-layer image (target: < 5 s, peak RSS < 200 MB).

    python3 bench/analyze.py [--size-mb 1000] [--files 50000] [--layers 10] [--dir DIR]

Makes an OCI layout once (cached in DIR, default /tmp/pybuild-bench-analyze): gzip layers of
half-compressible files, where later layers overwrite and delete some earlier files. Then times
`pybuild analyze --json` on it in a subprocess (wall time and the child's peak RSS) and, as the
peer measured in the same run, `tar -tzf` listing every layer (the least any analyser must do:
decompress and walk each tar; `zstd -dc | tar -t` with --codec zstd). Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_image(layout: Path, size: int, files: int, layers: int, codec: str = "gzip") -> None:
    """Write the benchmark image as an OCI layout (skipped if it is already there)."""
    if (layout / "index.json").exists():
        return
    tmp = layout.with_name(layout.name + ".tmp")
    (tmp / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    per_layer, per_file = files // layers, size // files
    zeros = bytes(per_file - per_file // 2)  # each file: random half, zero half (gzip halves it)
    diff_ids, descs, history = [], [], []
    for n in range(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs = sorted({f"usr/lib/pkg{n}/d{i % 50}" for i in range(per_layer)})
            for d in ["usr", "usr/lib", f"usr/lib/pkg{n}", *dirs]:
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            count = per_layer
            if n >= 2:  # overwrite 5% of the previous layer's files, delete one of its dirs
                for i in range(per_layer // 20):
                    ti = tarfile.TarInfo(f"usr/lib/pkg{n - 1}/d{i % 50}/f{i}")
                    ti.size = per_file
                    tar.addfile(ti, io.BytesIO(os.urandom(per_file // 2) + zeros))
                tar.addfile(tarfile.TarInfo(f"usr/lib/pkg{n - 2}/.wh.d49"))
                count -= per_layer // 20
            for i in range(count):
                ti = tarfile.TarInfo(f"usr/lib/pkg{n}/d{i % 50}/f{i}")
                ti.size, ti.mode = per_file, 0o644
                tar.addfile(ti, io.BytesIO(os.urandom(per_file // 2) + zeros))
        data = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        tool = ["pigz", "-c", "-6"] if codec == "gzip" else ["zstd", "-c", "-3", "-q"]
        gz = subprocess.run(tool, input=data, capture_output=True, check=True).stdout
        descs.append({"mediaType": f"application/vnd.oci.image.layer.v1.tar+{codec}", **_blob(tmp, gz)})
        history.append({"created_by": f"RUN install pkg{n}"})
        print(f"  layer {n}: {len(data) / 1e6:.0f} MB tar, {len(gz) / 1e6:.0f} MB {codec}", file=sys.stderr)
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "config": {}, "history": history}
    cfg = {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(tmp, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg,
                "layers": descs}
    man = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(tmp, json.dumps(manifest).encode()),
           "annotations": {"org.opencontainers.image.ref.name": "bench"}}
    (tmp / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    tmp.rename(layout)


def peak_rss_of(argv: list[str]) -> tuple[float, int, bytes, float]:
    """Wall seconds, peak RSS (bytes, from wait4: this child only), stdout and CPU seconds (user +
    system of the child and its own children) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []
    assert proc.stdout is not None and proc.stderr is not None
    while True:
        block = proc.stdout.read(1 << 20)
        if not block:
            break
        chunks.append(block)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime  # includes the descendants the child waited for
    return wall, usage.ru_maxrss * 1024, b"".join(chunks), cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1000)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--dir", default="/tmp/pybuild-bench-analyze")
    ap.add_argument("--codec", choices=["gzip", "zstd"], default="gzip", help="layer compression (default gzip)")
    ap.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    layout = Path(args.dir) / f"img-{args.size_mb}mb-{args.files}f-{args.layers}l" \
        f"{'' if args.codec == 'gzip' else '-' + args.codec}"
    layout.parent.mkdir(parents=True, exist_ok=True)
    if args.make_only:
        make_image(layout, args.size_mb * 1_000_000, args.files, args.layers, args.codec)
        return 0
    print(f"image: {layout} (made once)", file=sys.stderr)
    if not (layout / "index.json").exists():  # in a child: a forked child inherits this process's peak RSS
        subprocess.run([sys.executable, __file__, "--make-only", *sys.argv[1:]], check=True)
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    blobs = [layout / "blobs/sha256" / d["digest"].split(":")[1]
             for d in json.loads((layout / "blobs/sha256" / manifest).read_text())["layers"]]
    for b in blobs:  # warm the page cache for both contenders
        with open(b, "rb") as f:
            while f.read(1 << 24):
                pass

    list_cmd = "tar -tzf {}" if args.codec == "gzip" else "zstd -dcq {} | tar -tf -"
    peers = [peak_rss_of(["sh", "-c", " && ".join(list_cmd.format(b) + " >/dev/null" for b in blobs)])
             for _ in range(2)]
    peer_wall, peer_cpu = min(p[0] for p in peers), min(p[3] for p in peers)
    runs = [peak_rss_of([sys.executable, "-m", "builder", "analyze", "--json", str(layout)]) for _ in range(2)]
    wall, rss, cpu = min(r[0] for r in runs), max(r[1] for r in runs), min(r[3] for r in runs)
    report = json.loads(runs[0][2])
    files = sum(len(layer["added"]) + len(layer["modified"]) for layer in report["layers"])
    content = report["size_bytes"]
    print(f"image: {len(report['layers'])} layers, {files} files, {content / 1e9:.2f} GB content")
    print(f"pybuild analyze: {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS {rss / 1e6:.0f} MB   "
          "(targets: < 5 s, < 200 MB)")
    peer = "tar -tzf" if args.codec == "gzip" else "zstd -dc | tar -t"
    print(f"peer {peer} of every layer: {peer_wall:.2f} s wall, {peer_cpu:.2f} s CPU")
    print(f"ratio analyze / peer: {wall / peer_wall:.2f}x   (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    print(f"targets: wall < 5 s: {'met' if wall < 5 else 'MISSED'}; CPU < 5 s: {'met' if cpu < 5 else 'MISSED'}; "
          f"peak RSS < 200 MB: {'met' if rss < 200e6 else 'MISSED'}")
    # diff reads both images and hashes every file: no target, compared with listing both
    d_wall, d_rss, _, d_cpu = peak_rss_of([sys.executable, "-m", "builder", "diff", "--json", str(layout), str(layout)])
    print(f"pybuild diff of the image with itself: {d_wall:.2f} s wall, {d_cpu:.2f} s CPU, peak RSS "
          f"{d_rss / 1e6:.0f} MB; ratio / (2 x peer): {d_wall / (2 * peer_wall):.2f}x wall, "
          f"{d_cpu / (2 * peer_cpu):.2f}x CPU")
    return 0  # a measurement, not a test: `make bench` runs every benchmark


if __name__ == "__main__":
    sys.exit(main())
