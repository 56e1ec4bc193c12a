"""`pybuild cache`: list and measure build cache entries (`ls`, `du`)."""

from __future__ import annotations

import argparse
import json


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild cache {ls,du} [--json]"
    p.add_argument("action", choices=["ls", "du"], help="ls: one line per entry (size, last use, hits); "
                   "du: totals by kind")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from builder.analyze.cache import cache_rows, du_json, render_du, render_ls, rows_json
    from builder.util.paths import default_root

    rows = cache_rows(default_root())
    if args.action == "ls":
        print(rows_json(rows) if args.json else render_ls(rows))
    else:
        print(json.dumps(du_json(rows), indent=2) if args.json else render_du(rows))
    return 0
