"""`pybuild explain`: explain why steps of a build missed the cache."""

from __future__ import annotations

import argparse
import json

from builder.analyze_explain import explain_build, explanation_json, render_explanation, store_root


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild explain [--json] [BUILD]"
    p.add_argument("build", nargs="?", metavar="BUILD",
                   help="build id or a unique prefix (default: the latest build); see `pybuild history --builds`")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    explanation = explain_build(store_root(), args.build)
    if args.json:
        print(json.dumps(explanation_json(explanation), indent=2))
    else:
        print(render_explanation(explanation))
    return 0
