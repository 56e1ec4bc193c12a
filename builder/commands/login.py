"""`pybuild login`: check and store credentials for a registry (Docker's config.json, mode 0600)."""

from __future__ import annotations

import argparse
import sys

from builder.commands._registry_args import add_registry_args, registry_options


def configure(p: argparse.ArgumentParser) -> None:
    p.usage = "pybuild login [OPTIONS] [SERVER]"
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER", help="registry host[:port] (default: docker.io)")
    p.add_argument("-u", "--username", help="username")
    p.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_registry_args(p)


def _registry(server: str) -> str:
    host = server.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def run(args: argparse.Namespace) -> int:
    from builder.errors import RegistryError
    from builder.registry import credentials
    from builder.registry.client import RegistryClient

    registry = _registry(args.server)
    if args.password and args.password_stdin:
        raise RegistryError("--password and --password-stdin cannot be used together")
    username = args.username
    if args.password_stdin:
        if not username:
            raise RegistryError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        password = args.password
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    else:
        if not sys.stdin.isatty():
            raise RegistryError("no password given and stdin is not a terminal", hint="use --password-stdin")
        import getpass

        username = username or input("Username: ")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise RegistryError("a username and a password are required")
    creds = credentials.Credentials(username, password)
    try:
        RegistryClient(registry, registry_options(args), credentials=creds).check_login()
    except RegistryError as exc:
        if exc.status in (401, 403):
            raise RegistryError(f"login to {registry} failed: invalid username or password",
                                status=exc.status) from None
        raise
    where = credentials.store(registry, creds)
    print(f"Credentials saved to {where}")
    print("Login Succeeded")
    return 0
