"""`pybuild images`: list images in the local store (like `docker images`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from builder.commands._imagefmt import human_age, human_size, table
from builder.commands._listing import (add_filter, add_format, label_matches, parse_filters, print_formatted,
                                       reference_matches)
from builder.errors import ImageFormatError, StoreError
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("repository", nargs="?", help="only images of this repository (NAME or NAME:TAG)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("--no-trunc", action="store_true", help="show full image ids")
    p.add_argument("--json", action="store_true", help="one JSON object per image, in a list")
    add_format(p)
    add_filter(p, FILTERS)


FILTERS = ("dangling", "reference", "label", "before", "since")
HEADERS = {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"}


def image_size(store: Store, image_id: str) -> int:
    """The unpacked size of an image: the sum of its layers' uncompressed tar sizes (Docker's SIZE, the same
    for one image whether it was built, pulled or loaded; of a multi-platform image, its image for this
    machine, or else its first)."""
    total = 0
    for layer in store.listed_image(image_id).layers():
        try:
            total += store.measured_size(layer.diff_id)
        except (StoreError, OSError):
            total += layer.size
    return total


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    filters = parse_filters(args.filter, FILTERS)
    bounds = {k: _created_of(store, filters[k][0]) for k in ("before", "since") if k in filters}
    rows: list[dict[str, Any]] = []
    for rec in store.images():
        try:
            config = store.listed_image(rec.id).config()
            size = image_size(store, rec.id)
        except (StoreError, ImageFormatError) as exc:  # listed on stderr, never silently hidden
            print(f"warning: image {rec.id[7:19]} ({', '.join(rec.tags) or 'untagged'}) is unreadable: {exc}",
                  file=sys.stderr)
            continue
        created = config.created or ""
        if "dangling" in filters and (filters["dangling"][-1].lower() in ("true", "1")) != (not rec.tags):
            continue
        if "label" in filters and not label_matches(config.config.labels or {}, filters["label"]):
            continue
        if "before" in bounds and not created < bounds["before"] or "since" in bounds and not created > bounds["since"]:
            continue
        names = rec.tags or ("<none>:<none>",)
        for name in names:
            repo, _, tag = name.rpartition(":")
            if args.repository and args.repository not in (repo, name):
                continue
            if "reference" in filters and not reference_matches(name, filters["reference"]):
                continue
            rows.append({"Repository": repo, "Tag": tag, "ID": rec.id, "Digest": rec.manifest,
                         "Created": created, "Size": size})
    rows.sort(key=lambda r: (r["Created"], r["Repository"], r["Tag"]), reverse=True)
    if args.format and not args.quiet:
        print_formatted(args.format, [{
            "ID": r["ID"] if args.no_trunc else r["ID"][7:19], "Repository": r["Repository"], "Tag": r["Tag"],
            "Digest": r["Digest"] or "<none>", "CreatedSince": human_age(r["Created"]), "CreatedAt": r["Created"],
            "Size": human_size(r["Size"]), "Containers": "N/A"} for r in rows], HEADERS)
        return 0
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.quiet:
        seen: list[str] = []
        for r in rows:
            short = r["ID"] if args.no_trunc else r["ID"][7:19]
            if short not in seen:
                seen.append(short)
        print("\n".join(seen)) if seen else None
    else:
        out = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
        out += [[r["Repository"], r["Tag"], r["ID"] if args.no_trunc else r["ID"][7:19], human_age(r["Created"]),
                 human_size(r["Size"])] for r in rows]
        print(table(out))
    return 0


def _created_of(store: Store, ref: str) -> str:
    """The creation time of the image `before=`/`since=` names."""
    return store.resolve(ref).config().created or ""
