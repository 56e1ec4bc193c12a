"""`pybuild analyze` end to end on an image whose layers are dive's example (numbers in
test_analyze_layers.py), read from the store, OCI layouts and archives (ours and skopeo's) and a
real registry; `--ci` exit codes; `--html`; bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from builder.oci import mutate
from builder.oci.archive import write_docker_archive
from builder.oci.image import EMPTY
from builder.oci.layout import write_oci_archive, write_oci_layout
from builder.oci.model import History
from builder.oci.reference import parse_reference
from builder.transfer import push
from builder.store import Store
from tests.builder.analyze_fixtures import layer_tar
from tests.builder.registry_server import Registry, needs_registry
from tests.builder.test_analyze_layers import NGINX
from tests.conftest import pybuild, requires_tool

STEPS = ["FROM base", "COPY conf /etc", "RUN rm -rf /etc/nginx"]


@pytest.fixture
def demo(store_root: Path) -> Path:
    """demo:1 in a private store: three layers stored byte for byte (gzip), history per layer."""
    store = Store.open(store_root)
    layers = [store.blob_layer(store.put_tar(io.BytesIO(layer_tar(m)))) for m in NGINX]
    image = mutate.append_layers(EMPTY, *layers, history=[History(created_by=s) for s in STEPS])
    store.put_image(image, ["demo:1"])
    return store_root


def check(data: dict, *, exact_tar: bool = True) -> None:
    """The figures of the NGINX layers (hand-computed in test_analyze_layers.py)."""
    assert data["dive_efficiency"] == 23000 / 28000 and data["dive_wasted_bytes"] == 7000
    assert data["dive_user_wasted_percent"] == 7000 / 15000
    assert data["wasted_bytes"] == 10000 and data["user_wasted_bytes"] == 5000 and data["final_size_bytes"] == 10000
    assert [l["created_by"] for l in data["layers"]] == STEPS
    assert [l["content_size"] for l in data["layers"]] == [5000, 15000, 0]
    assert [l["wasted_bytes"] for l in data["layers"]] == [5000, 5000, 0]
    assert [[f["path"] for f in l["added"]] for l in data["layers"]] == [
        ["/etc/nginx/nginx.conf", "/etc/nginx/public"], ["/etc/athing"], []]
    assert data["layers"][2]["removed"] == [{"path": "/etc/nginx", "size": 8000, "layer": 1}]
    if exact_tar:
        assert [l["uncompressed_size"] for l in data["layers"]] == [len(layer_tar(m)) for m in NGINX]


def analyze_json(*args: str, **kw) -> dict:
    return json.loads(pybuild("analyze", "--json", *args, **kw).stdout)


def test_local_image(demo: Path) -> None:
    data = analyze_json("demo:1")
    check(data)
    store = Store.open(demo)
    image = store.resolve("demo:1")
    assert [l["compressed_size"] for l in data["layers"]] == [l.size for l in image.layers()]
    assert [l["digest"] for l in data["layers"]] == [str(l.digest) for l in image.layers()]
    assert data["reference"] == "demo:1"
    assert data["image"] == {"id": str(image.id), "platform": "linux/amd64", "created": ""}


def test_oci_layout_dir_and_archives(demo: Path, tmp_path: Path) -> None:
    image = Store.open(demo).resolve("demo:1")
    write_oci_layout(image, tmp_path / "layout")
    write_oci_archive(image, tmp_path / "oci.tar")
    write_docker_archive(image, tmp_path / "docker.tar")
    for target in ("layout", "oci.tar", "docker.tar"):
        check(analyze_json(str(tmp_path / target)))


@requires_tool("skopeo")
def test_archives_written_by_skopeo(demo: Path, tmp_path: Path) -> None:
    write_oci_layout(Store.open(demo).resolve("demo:1"), tmp_path / "layout")
    for transport, name in (("docker-archive", "skopeo-docker.tar"), ("oci-archive", "skopeo-oci.tar")):
        subprocess.run(["skopeo", "copy", "-q", f"oci:{tmp_path / 'layout'}", f"{transport}:{tmp_path / name}:demo:1"],
                       check=True, capture_output=True)
        check(analyze_json(str(tmp_path / name)), exact_tar=False)


@requires_tool("podman")
def test_archives_and_layout_written_by_podman_save(demo: Path, tmp_path: Path) -> None:
    write_docker_archive(Store.open(demo).resolve("demo:1"), tmp_path / "in.tar", tags=["demo:1"])
    runroot = tempfile.mkdtemp(prefix="pba", dir="/tmp")  # podman wants a runroot under 50 characters
    storage = ["--root", str(tmp_path / "podman"), "--runroot", runroot, "--storage-driver", "vfs"]
    try:
        subprocess.run(["podman", *storage, "load", "-q", "-i", str(tmp_path / "in.tar")], check=True,
                       capture_output=True, timeout=300)
        for fmt in ("docker-archive", "oci-archive", "oci-dir"):
            subprocess.run(["podman", *storage, "save", "-q", "--format", fmt, "-o", str(tmp_path / fmt), "demo:1"],
                           check=True, capture_output=True, timeout=300)
            check(analyze_json(str(tmp_path / fmt)), exact_tar=False)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


@needs_registry
def test_registry_reference_leaves_the_store_alone(demo: Path, registry: Registry) -> None:
    store = Store.open(demo)
    ref = f"{registry.host}/analyze/{uuid.uuid4().hex[:8]}:v1"
    push(store, "demo:1", parse_reference(ref))
    before = sorted(store.tags())
    check(analyze_json(ref))
    assert sorted(Store.open(demo).tags()) == before


def test_ci_rules_from_flags_and_file(demo: Path, tmp_path: Path) -> None:
    # demo:1: efficiency 0.8214, wasted 7000, user wasted 0.4667; dive's defaults: 0.9, off, 0.1
    assert pybuild("analyze", "demo:1", "--lowest-efficiency", "0.8", "--highest-user-wasted-percent", "off").returncode == 0
    failed = pybuild("analyze", "demo:1", "--highest-wasted-bytes", "6kB", check=False)
    assert failed.returncode == 1
    assert "FAIL: highestWastedBytes: too many bytes wasted (wasted-bytes=7000 > threshold=6000)" in failed.stdout
    assert "FAIL: lowestEfficiency" in failed.stdout and "FAIL: highestUserWastedPercent" in failed.stdout
    (tmp_path / ".pybuild-analyze.yaml").write_text("rules:\n  highestUserWastedPercent: 40%\n"
                                                    "  lowestEfficiency: disabled\n")
    proc = pybuild("analyze", "--ci", "demo:1", check=False, cwd=tmp_path)
    assert proc.returncode == 1 and "FAIL: highestUserWastedPercent" in proc.stdout
    assert "SKIP: lowestEfficiency" in proc.stdout
    assert pybuild("analyze", "--ci", "demo:1", "--highest-user-wasted-percent", "0.5", cwd=tmp_path).returncode == 0
    as_json = pybuild("analyze", "--json", "--no-files", "--ci", "demo:1", check=False, cwd=tmp_path)
    verdict = json.loads(as_json.stdout)["ci"]  # the verdict is in the JSON a CI job parses
    assert as_json.returncode == 1 and verdict["result"] == "FAIL"
    assert {"rule": "lowestEfficiency", "status": "SKIP", "message": ""} in verdict["rules"]
    assert [r["status"] for r in verdict["rules"] if r["rule"] == "highestUserWastedPercent"] == ["FAIL"]
    assert "ci" not in json.loads(pybuild("analyze", "--json", "--no-files", "demo:1").stdout)
    defaults = pybuild("analyze", "--ci", "demo:1", check=False)  # no file, no flags: dive's defaults
    assert defaults.returncode == 1 and "FAIL: lowestEfficiency" in defaults.stdout
    bad = pybuild("analyze", "--ci", "demo:1", "--lowest-efficiency", "90", check=False)
    assert bad.returncode == 1 and "--ci: ratio '90' is outside 0..1" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "broken.yaml").write_text("rules:\n  lowestEfficiency 0.9\n")
    broken = pybuild("analyze", "--ci-config", str(tmp_path / "broken.yaml"), "demo:1", check=False)
    assert broken.returncode == 1 and "broken.yaml:2: expected 'key: value'" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_html_report_file(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    table = pybuild("analyze", "demo:1", "--html", str(out)).stdout
    assert "Efficiency (dive):            82.14 %" in table
    page = out.read_text()
    assert "<h1>pybuild analyze: demo:1</h1>" in page and "82.14 %" in page and 'class="wasted"' in page


def test_bad_input_is_a_clear_error(store_root: Path, tmp_path: Path) -> None:
    missing = pybuild("analyze", "nosuch:1", check=False)
    assert missing.returncode == 1 and "image 'nosuch:1' is not in the store" in missing.stderr
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 300)
    bad = pybuild("analyze", str(junk), check=False)
    assert bad.returncode == 1 and str(junk) in bad.stderr
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "index.json").write_text("{bad")
    broken = pybuild("analyze", str(layout), check=False)
    assert broken.returncode == 1 and broken.stderr.startswith(f"{layout}: index: not valid JSON")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it would wait for a writer
    pipe = pybuild("analyze", str(fifo), check=False, timeout=60)
    assert pipe.returncode == 1 and f"{fifo}: not a regular file or a directory" in pipe.stderr
    empty = pybuild("analyze", "", check=False)
    assert empty.returncode == 1 and "empty image name" in empty.stderr
    negative = pybuild("analyze", "--base-layers", "-1", "nosuch:1", check=False)
    assert negative.returncode == 125 and "--base-layers\" flag: expected a whole number >= 0, got '-1'" in negative.stderr
    for proc in (missing, bad, broken, pipe, empty, negative):
        assert "Traceback" not in proc.stderr


def test_a_corrupt_layer_is_named_with_its_image(demo: Path, tmp_path: Path) -> None:
    image = Store.open(demo).resolve("demo:1")
    write_oci_layout(image, tmp_path / "good")
    write_oci_layout(image, tmp_path / "bad")
    layer = image.layers()[1]
    blob = tmp_path / "bad" / "blobs" / "sha256" / str(layer.digest).split(":")[1]
    blob.write_bytes(blob.read_bytes()[: layer.size // 2])
    for proc in (pybuild("analyze", str(tmp_path / "bad"), check=False),
                 pybuild("diff", str(tmp_path / "good"), str(tmp_path / "bad"), check=False)):
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        # a truncated blob no longer matches its descriptor's size: refused when the layout is read (issue 12)
        assert (f"{tmp_path / 'bad'}: blob {layer.digest} is {layer.size // 2} bytes, its descriptor says "
                f"{layer.size}") in proc.stderr


def test_public_api_is_exported() -> None:
    import builder.analyze.source as api

    assert sorted(api.__all__) == sorted(n for n in dir(api) if not n.startswith("_") and n not in (
        "annotations", "Path", "TYPE_CHECKING", "ImageFormatError", "InvalidReferenceError", "StoreError"))
    for name in api.__all__:
        assert getattr(api, name) is not None


def test_archive_layers_are_read_one_at_a_time(store_root: Path, tmp_path: Path) -> None:
    """Layers in one tar archive share its file handle: reading two at once corrupts both."""
    import os
    import tarfile

    store = Store.open(store_root)

    def big_layer(n: int) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for i in range(200):
                ti = tarfile.TarInfo(f"l{n}/f{i}")
                ti.size = 20000
                tar.addfile(ti, io.BytesIO(os.urandom(20000)))
        return buf.getvalue()

    layers = [store.blob_layer(store.put_tar(io.BytesIO(big_layer(n)))) for n in range(4)]
    write_oci_archive(mutate.append_layers(EMPTY, *layers), tmp_path / "big.tar")
    for _ in range(3):
        assert analyze_json("--no-files", str(tmp_path / "big.tar"))["size_bytes"] == 4 * 200 * 20000


@needs_registry
def test_the_explorer_reads_every_source_the_same(demo: Path, registry: Registry, tmp_path: Path) -> None:
    """The store, an OCI layout and archive, a docker-archive and a registry (read layer by layer,
    nothing pulled into the store) give the explorer the same marks, layer by layer."""
    from builder.analyze.explore import explore
    from builder.analyze.source import layer_sources, open_image, reads_one_at_a_time

    store = Store.open(demo)
    image = store.resolve("demo:1")
    write_oci_layout(image, tmp_path / "layout")
    write_oci_archive(image, tmp_path / "oci.tar")
    write_docker_archive(image, tmp_path / "docker.tar")
    ref = f"{registry.host}/explore/{uuid.uuid4().hex[:8]}:v1"
    push(store, "demo:1", parse_reference(ref))
    tags = sorted(store.tags())
    seen = []
    for target in ("demo:1", str(tmp_path / "layout"), str(tmp_path / "oci.tar"), str(tmp_path / "docker.tar"), ref):
        img, label = open_image(target, remote=True)
        model = explore(layer_sources(img), label=label, readers=1 if reads_one_at_a_time(target) else 2)
        seen.append([model.changes(i) for i in range(len(model.layers))])
        assert [l.created_by for l in model.layers] == STEPS
    assert all(s == seen[0] for s in seen[1:])
    assert seen[0][2] == {"/etc/nginx": "D", "/etc/nginx/nginx.conf": "D", "/etc/nginx/public": "D"}
    assert sorted(Store.open(demo).tags()) == tags
