"""`pybuild inspect`: an image's id, tags, config and manifest as JSON (like `docker inspect`)."""

from __future__ import annotations

import argparse
import json

from builder.commands.images import image_size
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="name[:tag], name@digest, or image id (prefix)")
    p.add_argument("-f", "--format", metavar="FORMAT", help="a Go template per image: {{.Id}}, {{json .Config}}, "
                                                           "{{range .Config.Env}}{{println .}}{{end}}")


def describe(store: Store, ref: str) -> dict:
    """The inspect document of one image."""

    image = store.resolve(ref)
    config = json.loads(image.raw_config())
    tags = sorted(t for t, i in store.tags().items() if i == image.id)
    return {
        "Id": image.id, "RepoTags": tags, "RepoDigests": store.repo_digests(image.id), "Digest": image.digest,
        "Created": config.get("created"),
        "Author": config.get("author", ""), "Architecture": config.get("architecture"), "Os": config.get("os"),
        "Size": image_size(store, image.id), "Config": config.get("config", {}),
        "RootFS": config.get("rootfs", {}), "History": config.get("history", []),
        "Manifest": json.loads(image.raw_manifest()),
    }


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    docs = [describe(store, ref) for ref in args.images]
    if args.format:
        from builder.util.gotemplate import Template

        tmpl = Template(args.format)
        for doc in docs:
            print(tmpl.render(doc))
        return 0
    print(json.dumps(docs, indent=2))
    return 0
