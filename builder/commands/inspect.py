"""`pybuild inspect`: a container's or an image's document as JSON (like `docker inspect`): a
container's id, name, state (with State.Health when its image has a HEALTHCHECK) and config, or
an image's id, tags, config and manifest. A name is looked up as a container first, as docker does."""

from __future__ import annotations

import argparse
import json
from typing import Any

from builder.commands.images import image_size
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="NAME|ID", help="a container (name or id), or an image "
                                                               "(name[:tag], name@digest, or image id prefix)")
    p.add_argument("--type", choices=["container", "image"], help="look up only this kind of object")
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


def describe_container(c: Any) -> dict:
    """Docker's container inspect document, the parts pybuild has."""
    cfg, st = c.config, c.state()
    running = c.is_running()
    state: dict[str, Any] = {
        "Status": "running" if running else "created" if st.status == "created" else "exited", "Running": running,
        "Paused": False, "Restarting": False, "OOMKilled": False, "Dead": False,
        "Pid": st.init_pid if running else 0, "ExitCode": st.exit_code or 0, "Error": st.error,
        "StartedAt": st.started or "0001-01-01T00:00:00Z", "FinishedAt": st.finished or "0001-01-01T00:00:00Z"}
    if cfg.healthcheck:
        state["Health"] = c.health() or {"Status": "starting", "FailingStreak": 0, "Log": []}
    process = cfg.process
    return {"Id": c.id, "Created": cfg.created, "Path": process.argv[0], "Args": list(process.argv[1:]),
            "State": state, "Image": cfg.image, "Name": "/" + cfg.name,
            "Config": {"Hostname": process.hostname, "User": process.user, "Tty": process.tty,
                       "OpenStdin": process.stdin, "Env": [f"{k}={v}" for k, v in process.env],
                       "Cmd": list(process.argv), "Image": cfg.image_ref, "WorkingDir": process.cwd,
                       **({"Healthcheck": {k: v for k, v in cfg.healthcheck.items() if k != "Argv"}}
                          if cfg.healthcheck else {})}}


def _container(ref: str) -> Any:
    """The container `ref` names (name, id or id prefix), or None."""
    from runtime.containers import NoSuchContainer

    from builder.containers import containers

    try:
        return containers().get(ref)
    except NoSuchContainer:
        return None


def run(args: argparse.Namespace) -> int:
    store = Store.open()
    docs = []
    for ref in args.images:
        found = _container(ref) if args.type != "image" else None
        if found is not None:
            docs.append(describe_container(found))
        elif args.type == "container":
            from runtime.containers import NoSuchContainer

            raise NoSuchContainer(f"no such container: {ref}")
        else:
            docs.append(describe(store, ref, args.platform))
    if args.format:
        from builder.util.gotemplate import Template

        tmpl = Template(args.format)
        for doc in docs:
            print(tmpl.render(doc))
        return 0
    print(json.dumps(docs, indent=2))
    return 0
