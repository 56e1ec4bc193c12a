"""`pybuild images`: list images in the local store (like `docker images`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from builder.commands._imagefmt import human_age, human_size, table
from builder.errors import ImageFormatError, StoreError
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("repository", nargs="?", help="only images of this repository (NAME or NAME:TAG)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("--no-trunc", action="store_true", help="show full image ids")
    p.add_argument("--json", action="store_true", help="one JSON object per image, in a list")


def image_size(store: Store, image_id: str) -> int:
    """The unpacked size of an image: the sum of its layers' uncompressed tar sizes (of a multi-platform
    image, its image for this machine, or else its first)."""
    total = 0
    for layer in store.listed_image(image_id).layers():
        try:
            total += store.layer_record(layer.diff_id).uncompressed_size or layer.size
        except StoreError:
            total += layer.size
    return total


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    rows: list[dict[str, Any]] = []
    for rec in store.images():
        try:
            config = store.listed_image(rec.id).config()
            size = image_size(store, rec.id)
        except (StoreError, ImageFormatError) as exc:  # listed on stderr, never silently hidden
            print(f"warning: image {rec.id[7:19]} ({', '.join(rec.tags) or 'untagged'}) is unreadable: {exc}",
                  file=sys.stderr)
            continue
        names = rec.tags or ("<none>:<none>",)
        for name in names:
            repo, _, tag = name.rpartition(":")
            if args.repository and args.repository not in (repo, name):
                continue
            rows.append({"Repository": repo, "Tag": tag, "ID": rec.id, "Digest": rec.manifest,
                         "Created": config.created or "", "Size": size})
    rows.sort(key=lambda r: (r["Created"], r["Repository"], r["Tag"]), reverse=True)
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
