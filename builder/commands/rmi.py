"""`pybuild rmi`: remove image names, and images no name refers to (space returns on `prune`)."""

from __future__ import annotations

import argparse

from builder.errors import InvalidReferenceError, StoreError
from builder.oci.reference import normalize_tag
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="name[:tag] or image id")
    p.add_argument("-f", "--force", action="store_true", help="remove an image by id even if several names point at it")


def remove(store: Store, ref: str, force: bool) -> list[str]:
    """Untag `ref` (a tag) or remove the image `ref` (an id); returns the lines to print."""
    tag = None
    try:
        tag = normalize_tag(ref)
    except InvalidReferenceError:
        pass
    lines = []
    if tag is not None and tag in store.tags():
        image_id = store.untag(tag)
        lines.append(f"Untagged: {tag}")
        if image_id not in store.tags().values():
            store.remove_image(image_id)
            lines.append(f"Deleted: {image_id}")
        return lines
    image = store.resolve(ref)
    names = sorted(t for t, i in store.tags().items() if i == image.id)
    if len(names) > 1 and not force:
        raise StoreError(f"image {image.id[7:19]} is referenced by several names ({', '.join(names)})",
                         hint="remove the names one by one, or use -f")
    lines += [f"Untagged: {n}" for n in store.remove_image(image.id)]
    lines.append(f"Deleted: {image.id}")
    return lines


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    failed = 0
    for ref in args.images:
        try:
            print("\n".join(remove(store, ref, args.force)))
        except StoreError as exc:
            print(f"pybuild rmi: {exc.render()}", file=__import__("sys").stderr)
            failed += 1
    return 1 if failed else 0
