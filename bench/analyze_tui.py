"""Benchmark: the layer explorer (`pybuild analyze IMAGE` on a terminal) against dive, both in tmux.

    python3 bench/analyze_tui.py [--size-mb 1000] [--files 50000] [--layers 10] [--dir DIR]

On bench/analyze.py's image (1 GB, 50,000 files, 10 layers, made once as an OCI layout; a
docker-archive copy with uncompressed layers is made once beside it, for dive), each program runs
in a private tmux server, as a person's terminal would run it:
  first screen   seconds from the start until the screen shows the tree of layer 0
  all layers     seconds until every layer is read (pybuild: "Layers (10)"; dive shows nothing before)
  keypress       milliseconds from send-keys until capture-pane shows a different screen (move, open
                 a directory, change the filter, next layer), median and worst of several presses; the
                 polling itself (one capture-pane, a few ms) is included, the same for both
  memory         peak RSS of the program (VmHWM)
Targets (issue 17): first screen < 3 s, keypress < 50 ms, memory < 300 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from analyze import make_image  # noqa: E402
from tests.tmux import Tmux  # noqa: E402


def docker_archive(layout: Path, out: Path) -> None:
    """The layout's image as a docker-archive with uncompressed layers (what dive reads), made once."""
    if out.exists():
        return
    index = json.loads((layout / "index.json").read_text())
    blob = lambda d: layout / "blobs/sha256" / d.split(":")[1]  # noqa: E731
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    config = blob(manifest["config"]["digest"]).read_bytes()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        names = []
        for n, layer in enumerate(manifest["layers"]):
            raw = out.with_name(f"layer{n}.tar")
            with open(raw, "wb") as f:
                subprocess.run(["pigz", "-dc", str(blob(layer["digest"]))], stdout=f, check=True)
            names.append(f"{n}/layer.tar")
            tar.add(raw, names[-1])
            raw.unlink()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        for name, data in ((config_name, config),
                           ("manifest.json", json.dumps([{"Config": config_name, "RepoTags": ["bench:1"],
                                                          "Layers": names}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)


def peak_rss(term: Tmux) -> int:
    """The largest VmHWM among the pane's processes, in bytes: the pane runs the program under tests.tmux's
    status-writing shell, so the program is a descendant of the pane's process, not the process itself."""
    pids = [term.tmux("display-message", "-p", "-t", "0", "#{pane_pid}").strip()]
    peak = 0
    while pids:
        pid = pids.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        pids += children
        peak = max([peak] + [int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")])
    return peak


def wait_screen(term: Tmux, pattern: str, timeout: float = 600) -> float:
    import re

    start = time.perf_counter()
    while not re.search(pattern, term.screen()):
        if time.perf_counter() - start > timeout:
            sys.exit(f"timed out waiting for {pattern!r}:\n{term.screen()}")
        time.sleep(0.01)
    return time.perf_counter()


def keypress(term: Tmux, key: str, timeout: float = 30.0) -> float:
    """Milliseconds from sending `key` until the screen changes."""
    before = term.screen(escapes=True)  # with attributes: a moved highlight is a change
    start = time.perf_counter()
    term.tmux("send-keys", "-t", "0", key)
    while term.screen(escapes=True) == before:
        if time.perf_counter() - start > timeout:
            return float("inf")
    return (time.perf_counter() - start) * 1000


def settle(term: Tmux, quiet: float = 0.3) -> None:
    """Wait until the screen stops changing (a program still drawing would pollute the next press)."""
    last, since = term.screen(), time.perf_counter()
    while time.perf_counter() - since < quiet:
        time.sleep(0.03)
        now = term.screen()
        if now != last:
            last, since = now, time.perf_counter()


def run(name: str, argv: list[str], first: str, loaded: str, keys: list[tuple[str, str]], sock: Path) -> dict:
    term = Tmux(sock, 120, 40)
    try:
        t0 = time.perf_counter()
        term.start(["sh", "-c", "exec " + " ".join(argv)])
        t_first = wait_screen(term, first) - t0
        t_all = wait_screen(term, loaded) - t0
        settle(term)
        times: dict[str, list[float]] = {}
        for label, key in keys:
            times.setdefault(label, []).append(keypress(term, key, 10.0))
            settle(term, 0.15)
        rss = peak_rss(term)
    finally:
        term.close()
    return {"name": name, "first": t_first, "all": t_all, "keys": times, "rss": rss}


def main() -> int:
    import os

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # both programs start as installed: compiled modules cached
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1000)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--dir", default="/tmp/pybuild-bench-analyze")
    ap.add_argument("--no-dive", action="store_true", help="measure pybuild alone")
    args = ap.parse_args()
    layout = Path(args.dir) / f"img-{args.size_mb}mb-{args.files}f-{args.layers}l"
    layout.parent.mkdir(parents=True, exist_ok=True)
    if not (layout / "index.json").exists():
        make_image(layout, args.size_mb * 1_000_000, args.files, args.layers)
    archive = layout.with_name(layout.name + "-docker.tar")
    docker_archive(layout, archive)
    work = Path(args.dir) / "tmux"
    work.mkdir(exist_ok=True)

    n = args.layers
    # open /usr, /usr/lib, /usr/lib/pkg0 (the cursor starts on /usr), move in it, filter (x3: changes, cumulative,
    # all), next layer (x3), close and open: the presses a person makes, each one measured
    ours_keys = ([("open", "Space"), ("move", "Down")] * 3 + [("move", "Down")] * 4 + [("filter", "f")] * 3
                 + [("next layer", "]")] * 3 + [("open", "Space")] * 2)
    ours = run("pybuild analyze", [sys.executable, "-m", "builder", "analyze", str(layout)],
               r"Layer 0: whole tree  \(\d+ rows\)", rf"Layers \({n}\)", ours_keys, work / "ours.sock")
    results = [ours]
    if not args.no_dive:
        import shutil

        dive = shutil.which("dive") or str(Path(sys.executable).with_name("dive"))
        # dive starts in the layer list: Down = next layer; Tab to the tree, Down moves, Space collapses/expands,
        # ^U hides unmodified files (its filter)
        dive_keys = ([("next layer", "Down")] * 3 + [("move", "Tab")] + [("move", "Down")] * 4
                     + [("open", "Space")] * 2 + [("filter", "C-u")] * 2)
        results.append(run("dive", [dive, "--source", "docker-archive", str(archive)], r"Filetree",
                           r"Filetree", dive_keys, work / "dive.sock"))
    print(f"image: {layout.name} ({args.layers} layers, {args.files} files, {args.size_mb} MB); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for r in results:
        keys = "  ".join(f"{k} {statistics.median(v):.0f}/{max(v):.0f} ms" for k, v in r["keys"].items())
        every = [x for v in r["keys"].values() for x in v]
        print(f"{r['name']:>16}: first screen {r['first']:.2f} s, all layers {r['all']:.2f} s, peak RSS "
              f"{r['rss'] / 1e6:.0f} MB; keypress median {statistics.median(every):.0f} ms, worst {max(every):.0f} ms")
        print(f"{'':>16}  (median/worst) {keys}")
    o = results[0]
    worst = max(x for v in o["keys"].values() for x in v)
    print(f"targets: first screen < 3 s: {'met' if o['first'] < 3 else 'MISSED'}; keypress < 50 ms: "
          f"{'met' if worst < 50 else 'MISSED'} (worst {worst:.0f} ms); memory < 300 MB: "
          f"{'met' if o['rss'] < 300e6 else 'MISSED'}")
    if len(results) > 1:
        d = results[1]
        print(f"ratio pybuild / dive: first screen {o['first'] / d['first']:.2f}x, all layers "
              f"{o['all'] / d['all']:.2f}x, peak RSS {o['rss'] / max(d['rss'], 1):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
