"""Arguments shared by the registry commands (pull, push, login, pin)."""

from __future__ import annotations

import argparse

from builder.registry.transport import RegistryOptions


def add_registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow plain http and unverified TLS for this registry (repeatable)")


def registry_options(args: argparse.Namespace) -> RegistryOptions:
    return RegistryOptions.load(args.insecure_registry)
