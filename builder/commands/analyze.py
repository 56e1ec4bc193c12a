"""`pybuild analyze`: explain what each layer of an image costs and wastes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.analyze.ci import Thresholds
    from builder.analyze.explore import Explorer
    from builder.analyze.layers import ImageReport


def _count(text: str) -> int:
    """A whole number >= 0 (argparse reports the error)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild analyze [OPTIONS] IMAGE"
    p.description = ("Per layer: compressed and uncompressed size, the instruction, files added, modified and "
                     "removed, wasted bytes, largest files; dive's efficiency and wasted bytes and the bytes a user "
                     "could actually save. IMAGE is a local image, an OCI layout directory, an OCI or docker "
                     "archive, or a registry reference.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="of a multi-platform image, analyse this platform's (default: this machine's)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--no-tui", action="store_true", help="print the report even on a terminal (where IMAGE "
                   "otherwise opens the interactive layer explorer)")
    p.add_argument("--no-files", action="store_true", help="with --json: counts instead of per-layer file lists")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--top", type=_count, default=10, metavar="N", help="largest files shown (default 10)")
    p.add_argument("--files", action="store_true", help="also list each layer's added, modified and removed files")
    p.add_argument("--base-layers", type=_count, default=1, metavar="N",
                   help="layers that belong to the base image, not counted in what a user could save "
                        "(default 1; dive's figures always take 1)")
    p.add_argument("--build", metavar="BUILD",
                   help="build record for --html (default: the latest build that produced this image)")
    ci = p.add_argument_group("CI (exit 1 when a rule fails; rules judge dive's figures, as `dive --ci`)")
    ci.add_argument("--ci", action="store_true", help="check the rules below, or those of .pybuild-analyze.yaml; "
                    "as in dive, an unset rule takes dive's default (efficiency 0.9, user wasted 0.1) and "
                    "'disabled' turns one off")
    ci.add_argument("--ci-config", metavar="FILE", help="rules file (default ./.pybuild-analyze.yaml if present)")
    ci.add_argument("--lowest-efficiency", metavar="RATIO", help="fail below this efficiency (e.g. 0.95)")
    ci.add_argument("--highest-wasted-bytes", metavar="SIZE", help="fail above this many wasted bytes (e.g. 20MB)")
    ci.add_argument("--highest-user-wasted-percent", metavar="RATIO",
                    help="fail above this ratio of wasted to user bytes (e.g. 0.1 or 10%%)")


def run(args: argparse.Namespace) -> int:
    from builder.analyze.source import analyze_image, open_image, reads_one_at_a_time

    limits = _limits(args)
    image, label = open_image(args.image, remote=True, platform=args.platform)
    if _interactive(args, limits):
        from builder.analyze.explore import Loading
        from builder.analyze.source import layer_sources

        loading = Loading(layer_sources(image), label=label,
                          readers=1 if reads_one_at_a_time(args.image) else 2).start()
        from builder.analyze.explain import layer_steps, load_builds
        from builder.analyze.tui import run_explorer  # Textual loads while layer 0 is read
        from builder.util.paths import default_root

        return run_explorer(loading, label, layer_steps(load_builds(default_root()), str(image.id)))
    report = analyze_image(image, reference=label, base_layers=args.base_layers,
                           readers=1 if reads_one_at_a_time(args.image) else 2)
    if args.html:
        from builder.analyze.explore import explore
        from builder.analyze.source import layer_sources

        model = explore(layer_sources(image), label=label, readers=1 if reads_one_at_a_time(args.image) else 2)
        _write_html(args, report, str(image.id), model)
    results = None
    if limits is not None:
        from builder.analyze.ci import evaluate

        results = evaluate(report, limits)
    if args.json:
        from builder.analyze.report import dumps

        text = dumps(report, files=not args.no_files)
        if results is not None:  # the verdict belongs in the JSON a CI job parses
            import json

            data = json.loads(text)
            data["ci"] = {"result": "FAIL" if any(r.status == "FAIL" for r in results) else "PASS",
                          "rules": [{"rule": r.rule, "status": r.status, "message": r.message} for r in results]}
            text = json.dumps(data, indent=2)
        print(text)
    else:
        from builder.analyze.report import render_table

        print(render_table(report, top=args.top))
        if args.files:
            from builder.analyze.report import render_layer_files

            print(render_layer_files(report, top=args.top))
    if results is None:
        return 0
    from builder.analyze.ci import render

    print(render(results), file=sys.stderr if args.json else sys.stdout)
    return 1 if any(r.status == "FAIL" for r in results) else 0


def _interactive(args: argparse.Namespace, limits: "Thresholds | None") -> bool:
    """The explorer opens on a terminal, unless a report is asked for."""
    asked = args.no_tui or args.json or args.html or args.files or limits is not None
    return not asked and sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


def _limits(args: argparse.Namespace) -> "Thresholds | None":
    """The CI rules, or None when not in CI mode: dive's defaults, under the rules file, under the flags."""
    from builder.analyze.ci import CONFIG_NAME, DEFAULTS, load_config, thresholds

    flags = thresholds(args.lowest_efficiency, args.highest_wasted_bytes, args.highest_user_wasted_percent,
                       where="--ci: ")
    if not args.ci and not flags and not args.ci_config:
        return None
    config = args.ci_config or (CONFIG_NAME if Path(CONFIG_NAME).is_file() else None)
    return (load_config(config) if config else DEFAULTS).merged(flags)


def _write_html(args: argparse.Namespace, report: "ImageReport", image_id: str, model: "Explorer") -> None:
    from builder.analyze.advice import rebuild_costs, suggestions
    from builder.analyze.explain import build_of_image, find_build, load_builds
    from builder.analyze.html import render_html
    from builder.util.atomic import write_atomic
    from builder.cache.keys import BuildCache
    from builder.util.paths import default_root

    root = default_root()
    builds = load_builds(root)
    build = None
    if args.build:
        build = find_build(builds, args.build)
    else:
        build = build_of_image(builds, image_id)[0]
    cache = BuildCache(root)
    costs = rebuild_costs(build, cache) if build else []
    advice = suggestions(build, cache) if build else []
    from builder.analyze.explain import layer_steps

    page = render_html(report, build=build, costs=costs, suggestions=advice, explorer=model,
                       layer_steps=layer_steps(builds, image_id))
    write_atomic(args.html, page.encode())
