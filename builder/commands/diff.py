"""`pybuild diff`: compare two images layer by layer and file by file."""

from __future__ import annotations

import argparse
import json
import sys


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild diff [--json] IMAGE_A IMAGE_B"
    p.description = ("Layers side by side, files added, removed and changed (with size deltas) in the final "
                     "filesystems, and config differences. Each IMAGE is what `pybuild analyze` accepts.")
    p.add_argument("a", metavar="IMAGE_A")
    p.add_argument("b", metavar="IMAGE_B")
    p.add_argument("--json", action="store_true", help="print JSON (every file)")
    p.add_argument("--tui", action="store_true", help="open the layer explorer on the difference (on a terminal): "
                   "layer 0 is A's filesystem, layer 1 B's, marked with what changed")


def run(args: argparse.Namespace) -> int:
    from builder.analyze.source import open_image
    from builder.analyze.diff import diff_images, diff_json, render_diff
    from builder.errors import BuildError

    if args.tui and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BuildError("diff --tui needs a terminal", hint="drop --tui for the text report, or add --json")
    a, label_a = open_image(args.a, remote=True)
    b, label_b = open_image(args.b, remote=True)
    if args.tui:
        from builder.analyze.diff import diff_explorer
        from builder.analyze.tui import run_model

        return run_model(diff_explorer(a, b, label_a=label_a, label_b=label_b), f"{label_a} -> {label_b}")
    d = diff_images(a, b, label_a=label_a, label_b=label_b)
    print(json.dumps(diff_json(d), indent=2) if args.json else render_diff(d))
    return 0
