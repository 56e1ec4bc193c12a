"""A build started from code: `builder.build.build(BuildOptions(...))`, with no command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, pybuild

SCRIPT = """
import json, sys
from builder.build import BuildOptions, Output, build
result = build(BuildOptions(sys.argv[1], tags=("api:1",), build_args={"V": "from-code"},
                            outputs=(Output("image"), Output("local", {"dest": sys.argv[2]}))))
print(json.dumps({"id": result.image_id, "digest": result.manifest_digest, "build": result.build_id,
                  "argparse": "argparse" in sys.modules}))
"""


def test_a_build_from_typed_options_without_the_cli(store: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG V\nCOPY a /a\nRUN echo $V > /v\n")
    (ctx / "a").write_text("a\n")
    env = {**os.environ, **store, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ctx), str(tmp_path / "rootfs")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["argparse"] is False  # nothing below the CLI parses command lines
    assert (tmp_path / "rootfs" / "v").read_text() == "from-code\n" and (tmp_path / "rootfs" / "a").read_text() == "a\n"
    inspected = json.loads(pybuild("inspect", "api:1", env=store).stdout)
    assert (inspected[0] if isinstance(inspected, list) else inspected)["Id"] == result["id"]
    record = Path(store["PYBUILD_ROOT"], "builds", f"{result['build']}.json")
    assert json.loads(record.read_text())["image_id"] == result["id"]


def test_bad_options_are_a_build_error_not_a_traceback(store: dict[str, str], tmp_path: Path) -> None:
    code = ("from builder.build import BuildOptions, build\nfrom builder.errors import BuildError\n"
            "try:\n    build(BuildOptions(%r))\nexcept BuildError as e:\n    print('error:', e)\n" % str(tmp_path / "nope"))
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **store, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("error:") and str(tmp_path / "nope") in proc.stdout, \
        proc.stdout + proc.stderr
