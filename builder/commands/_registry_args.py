"""Arguments shared by the registry commands (pull, push, login, pin)."""

from __future__ import annotations

import argparse

from builder.registry.transport import RegistryOptions


def add_registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow plain http and unverified TLS for this registry (repeatable)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on a registry request (retries included) after this long; a blob gets "
                        "1 s more per MiB (default 120, or $PYBUILD_REGISTRY_TIMEOUT)")


def registry_options(args: argparse.Namespace) -> RegistryOptions:
    return RegistryOptions.load(args.insecure_registry, args.timeout)
