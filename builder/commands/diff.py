"""`pybuild diff`: compare two images layer by layer and file by file."""

from __future__ import annotations

import argparse
import json


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild diff [--json] IMAGE_A IMAGE_B"
    p.description = ("Layers side by side, files added, removed and changed (with size deltas) in the final "
                     "filesystems, and config differences. Each IMAGE is what `pybuild analyze` accepts.")
    p.add_argument("a", metavar="IMAGE_A")
    p.add_argument("b", metavar="IMAGE_B")
    p.add_argument("--json", action="store_true", help="print JSON (every file)")


def run(args: argparse.Namespace) -> int:
    from builder.analyze.source import open_image
    from builder.analyze.diff import diff_images, diff_json, render_diff

    a, label_a = open_image(args.a, remote=True)
    b, label_b = open_image(args.b, remote=True)
    d = diff_images(a, b, label_a=label_a, label_b=label_b)
    print(json.dumps(diff_json(d), indent=2) if args.json else render_diff(d))
    return 0
