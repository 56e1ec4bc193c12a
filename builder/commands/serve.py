"""`pybuild serve`: answer the Docker Engine API (1.41) on a unix socket or TLS-verified TCP, so
that `DOCKER_HOST=unix:///run/pybuild.sock docker build .` builds with pybuild."""

from __future__ import annotations

import argparse

from builder.serve.options import DEFAULT_HOST, ServeOptions


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-H", "--host", action="append", default=[], metavar="unix:///PATH|tcp://ADDR:PORT",
                   help=f"where to listen (repeatable; default {DEFAULT_HOST})")
    p.add_argument("--group", metavar="GROUP", help="group owning the unix sockets (mode 0660), e.g. docker")
    p.add_argument("--tlsverify", action="store_true", help="TCP: require client certificates signed by --tlscacert")
    p.add_argument("--tlscacert", metavar="FILE", help="CA certificate clients must be signed by")
    p.add_argument("--tlscert", metavar="FILE", help="the server's TLS certificate")
    p.add_argument("--tlskey", metavar="FILE", help="the server's TLS key")
    p.add_argument("--insecure-tcp", action="store_true",
                   help="allow TCP without TLS (loopback addresses only): anyone on this machine gets root")
    p.add_argument("--max-body", type=int, default=8 << 30, metavar="BYTES",
                   help="largest request body (build context, loaded archive) accepted (default 8 GiB)")


def run(args: argparse.Namespace) -> int:
    from builder.serve import serve

    serve(ServeOptions(hosts=tuple(args.host) or (DEFAULT_HOST,), group=args.group, tlsverify=args.tlsverify,
                       tlscacert=args.tlscacert, tlscert=args.tlscert, tlskey=args.tlskey,
                       insecure_tcp=args.insecure_tcp, max_body=args.max_body))
    return 0
