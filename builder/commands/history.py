"""`pybuild history`: the layers of an image and the steps that made them (like `docker history`).

With `--builds`, the builds recorded by `pybuild build` instead (see builder/analyze/explain.py).
"""

from __future__ import annotations

import argparse
import json

from builder.commands._imagefmt import human_age, human_size, table
from builder.errors import StoreError
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", metavar="IMAGE", help="name[:tag] or image id")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten CREATED BY")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--builds", action="store_true", help="list recorded builds instead of an image's history")
    p.add_argument("-n", "--last", type=int, metavar="N", help="with --builds: only the last N builds")
    p.add_argument("--format", metavar="FORMAT", help="a Go template per entry ({{.ID}}, {{.CreatedBy}}, {{.Size}}), "
                                                       "'table ...', or json")


def rows(store: Store, ref: str) -> list[dict]:
    """History entries newest first, each with the size of the layer it made (0 for empty ones)."""
    image = store.resolve(ref)
    config = image.config()
    layers = list(image.layers())
    out = []
    i = 0
    for h in config.history:
        size = 0
        if not h.empty_layer and i < len(layers):
            try:
                size = store.measured_size(layers[i].diff_id)
            except (StoreError, OSError):
                size = layers[i].size
            i += 1
        out.append({"id": "<missing>", "created": h.created, "created_by": h.created_by, "size": size,
                    "comment": h.comment, "empty_layer": h.empty_layer})
    out.reverse()
    if out:
        out[0]["id"] = image.id
    return out


def run(args: argparse.Namespace) -> int:
    if args.builds:
        from builder.analyze.explain import history_builds

        return history_builds(json_output=args.json, last=args.last)
    if not args.image:
        raise StoreError("pybuild history: give an IMAGE (or --builds)")
    store = Store.open()
    entries = rows(store, args.image)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if args.quiet:
        print("\n".join(e["id"] if args.no_trunc or e["id"] == "<missing>" else e["id"][7:19] for e in entries))
        return 0
    if args.format:
        from builder.commands._listing import print_formatted

        print_formatted(args.format, [{
            "ID": e["id"] if args.no_trunc or e["id"] == "<missing>" else e["id"][7:19],
            "CreatedSince": human_age(e["created"]), "CreatedAt": e["created"], "CreatedBy": e["created_by"],
            "Size": human_size(e["size"]), "Comment": e["comment"]} for e in entries],
            {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"})
        return 0
    table_rows = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for e in entries:
        by = e["created_by"] if args.no_trunc or len(e["created_by"]) <= 45 else e["created_by"][:44] + "…"
        ident = e["id"] if args.no_trunc or e["id"] == "<missing>" else e["id"][7:19]
        table_rows.append([ident, human_age(e["created"]), by, human_size(e["size"]), e["comment"]])
    print(table(table_rows))
    return 0
