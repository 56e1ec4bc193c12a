"""`pybuild import`: create an image from a root filesystem tarball (like `docker import`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from builder.errors import BuildError, StoreError
from builder.oci import compress, mutate
from builder.oci.image import EMPTY
from builder.oci.model import ContainerConfig, History
from builder.oci.reference import normalize_tag
from builder.store import Store


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="ROOTFS.tar", help="a tar (plain, gzip or zstd) of a root filesystem; - for stdin")
    p.add_argument("name", metavar="NAME[:TAG]", nargs="?", help="tag to give the image")
    p.add_argument("-m", "--message", default="", help="commit message for the history entry")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTR",
                   help="apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, "
                        "LABEL, EXPOSE (e.g. -c 'CMD [\"sh\"]')")
    # uncompressed by default, as a build keeps its layers (and docker import its tar): push, save and
    # --output make the compressed copy they need once; gzip here cost 5x docker import's time
    p.add_argument("--compression", default=compress.NONE, choices=[compress.GZIP, compress.ZSTD, compress.NONE],
                   help="layer compression in the store (default uncompressed: compressed when pushed or saved)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="the platform the files are for (default: this machine's), as docker import --platform")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")


def _argv(value: str) -> tuple[str, ...]:
    """JSON (exec) form, or shell form wrapped in /bin/sh -c."""
    if value.startswith("["):
        try:
            argv = json.loads(value)
        except ValueError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return tuple(argv)
    return ("/bin/sh", "-c", value)


def apply_changes(config: ContainerConfig, changes: list[str]) -> ContainerConfig:
    """`docker import --change` for the instructions that only touch the config."""
    for change in changes:
        word, _, value = change.strip().partition(" ")
        word, value = word.upper(), value.strip()
        if word == "CMD":
            config = replace(config, cmd=_argv(value))
        elif word == "ENTRYPOINT":
            config = replace(config, entrypoint=_argv(value))
        elif word == "ENV" and "=" in value:
            key = value.split("=", 1)[0]
            config = replace(config, env=tuple(e for e in config.env if e.split("=", 1)[0] != key) + (value,))
        elif word == "WORKDIR" and value:
            config = replace(config, working_dir=value)
        elif word == "USER" and value:
            config = replace(config, user=value)
        elif word == "LABEL" and "=" in value:
            key, _, val = value.partition("=")
            config = replace(config, labels={**config.labels, key: val.strip('"')})
        elif word == "EXPOSE" and value:
            port = value if "/" in value else value + "/tcp"
            config = replace(config, exposed_ports=tuple(sorted({*config.exposed_ports, port})))
        else:
            raise BuildError(f"pybuild import: unsupported --change {change!r}",
                             hint="use CMD, ENTRYPOINT, ENV k=v, WORKDIR, USER, LABEL k=v or EXPOSE")
    return config


def run(args: argparse.Namespace) -> int:
    from builder.oci.platform import normalize, parse

    platform = normalize(parse(args.platform))  # None: this machine's; a bad one fails before storing anything
    tags = [normalize_tag(args.name)] if args.name else []
    apply_changes(ContainerConfig(), args.change)  # bad --change: fail before storing anything
    store = Store.open()
    with store.lease():
        try:
            f = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {args.file}: {exc.strerror}") from None
        with f:
            record = store.commit_tar(f, compression=args.compression, epoch=mutate.source_date_epoch())
        source = "-" if args.file == "-" else os.path.basename(args.file)
        image = mutate.append_layers(EMPTY, store.blob_layer(record),
                                     history=[History(created_by=f"pybuild import {source}", comment=args.message)])
        config = image.config()
        image = mutate.with_config(image, replace(config, os=platform.os, architecture=platform.architecture,
                                                  variant=platform.variant,
                                                  config=apply_changes(config.config, args.change)))
        image = mutate.with_created(image)
        image_id = store.put_image(image, tags)
    print(image_id)
    return 0
