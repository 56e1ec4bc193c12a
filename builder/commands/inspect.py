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
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="of a multi-platform image, this platform's image (default: this machine's)")


def describe(store: Store, ref: str, platform: str | None = None) -> dict:
    """The inspect document of one image; of a multi-platform image, its image for `platform` (default:
    this machine's), with the index's digest and platforms under "Index"."""
    from builder.oci.platform import parse

    image = store.resolve(ref, parse(platform) if platform else None)
    index = store.index(ref)
    config = json.loads(image.raw_config())
    ids = {image.id, *([index[0]] if index else [])}
    tags = sorted(t for t, i in store.tags().items() if i in ids)
    doc = {
        "Id": image.id, "RepoTags": tags, "RepoDigests": store.repo_digests(image.id), "Digest": image.digest,
        "Created": config.get("created"),
        "Author": config.get("author", ""), "Architecture": config.get("architecture"), "Os": config.get("os"),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Size": image_size(store, image.id), "Config": config.get("config", {}),
        "RootFS": config.get("rootfs", {}), "History": config.get("history", []),
        "Manifest": json.loads(image.raw_manifest()),
    }
    if index is not None:
        doc["Index"] = {"Digest": index[0], "Platforms": [str(d.platform) for d in index[1].manifests if d.platform],
                        "Manifests": [d.digest for d in index[1].manifests]}
        missing = {d.digest for d in store.missing_images(index[1])}
        doc["Index"]["Pulled"] = [str(d.platform) for d in index[1].manifests  # a partial index lacks some
                                  if d.platform and d.platform.architecture != "unknown" and d.digest not in missing]
    return doc


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    docs = [describe(store, ref, args.platform) for ref in args.images]
    if args.format:
        from builder.util.gotemplate import Template

        tmpl = Template(args.format)
        for doc in docs:
            print(tmpl.render(doc))
        return 0
    print(json.dumps(docs, indent=2))
    return 0
