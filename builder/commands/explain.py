"""`pybuild explain`: explain why steps of a build missed the cache."""

from __future__ import annotations

import argparse
import json

from builder.analyze.explain import explain_build, explanation_json, render_explanation, store_root


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild explain [--json] [BUILD]"
    p.add_argument("build", nargs="?", metavar="BUILD",
                   help="build id or a unique prefix (default: the latest build); see `pybuild history --builds`")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--top", type=int, default=10, metavar="N", help="context paths shown in the rebuild-cost table")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from builder.analyze.advice import rebuild_costs, render_advice, suggestions
    from builder.analyze.explain import find_build, load_builds
    from builder.cache.keys import BuildCache

    root = store_root()
    explanation = explain_build(root, args.build)
    build = find_build(load_builds(root), explanation.build_id)
    cache = BuildCache(root)
    costs, advice = rebuild_costs(build, cache), suggestions(build, cache)
    if args.json:
        data = explanation_json(explanation)
        data["rebuild_cost"] = [asdict(c) for c in costs]
        data["suggestions"] = [asdict(s) for s in advice]
        print(json.dumps(data, indent=2))
    else:
        print(render_explanation(explanation))
        print(render_advice(costs, advice, top=args.top))
    return 0
