"""`pybuild build`: the flags of `docker build` / `docker buildx build`."""

from __future__ import annotations

import argparse

from builder.errors import NotImplementedYet


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild build [OPTIONS] PATH | URL | -"
    p.add_argument("context", metavar="PATH", help="build context directory, or - to read a Dockerfile (or a context tarball) from stdin")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name and optionally tag the image (repeatable)")
    p.add_argument("-f", "--file", metavar="FILE", help="name of the Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]", help="set a build-time variable; KEY alone takes it from the environment")
    p.add_argument("--target", metavar="STAGE", help="build this stage and only what it needs")
    p.add_argument("--no-cache", action="store_true", help="do not use the cache")
    p.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE", help="do not use the cache for this stage")
    p.add_argument("--pull", action="store_true", help="always pull base images")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="set metadata on the image")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="target platform (default: this machine's)")
    p.add_argument("--progress", choices=["auto", "plain", "tty", "json", "quiet"], default="auto", help="progress output (default: auto)")
    p.add_argument("-o", "--output", action="append", default=[], metavar="type=TYPE[,dest=...]", help="output: image, oci, docker, local, tar, registry")
    p.add_argument("--push", action="store_true", help="push the image to its registry (--output type=registry)")
    p.add_argument("--load", action="store_true", help="store the image locally (the default with -t)")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID[,src=FILE|env=VAR]", help="expose a secret to RUN --mount=type=secret")
    p.add_argument("--cache-from", action="append", default=[], metavar="type=registry,ref=REF", help="import build cache from a registry or directory")
    p.add_argument("--cache-to", action="append", default=[], metavar="type=registry,ref=REF", help="export build cache to a registry or directory")
    p.add_argument("--iidfile", metavar="FILE", help="write the image id to FILE")
    p.add_argument("--metadata-file", metavar="FILE", help="write build result metadata to FILE")
    p.add_argument("--network", choices=["default", "none", "host"], default="default", help="network mode for RUN steps")
    p.add_argument("--jobs", type=int, metavar="N", help="stages built at once (default: number of cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("pybuild build: not implemented yet (issue #6)")
