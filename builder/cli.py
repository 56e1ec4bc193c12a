"""The `pybuild` command line: dispatch, help, and the one place errors become exit codes.

Each subcommand lives in `builder/commands/<name>.py` with two functions:
`configure(parser)` adds its arguments and `run(args) -> int` does the work.
Only the chosen command's module is imported, so `pybuild` starts fast.
"""

from __future__ import annotations

import importlib
import os
import sys

from builder.errors import UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn, Sequence

PROG = "pybuild"

# name -> (module under builder.commands, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "Build an image from a Dockerfile (the default: `pybuild -t NAME .`)"),
    "parse": ("parse", "Parse a Dockerfile and print its outline or its AST as JSON"),
    "check": ("check", "Run BuildKit's build checks on a Dockerfile without building"),
    "images": ("images", "List images in the local store"),
    "inspect": ("inspect", "Show an image's manifest and config as JSON"),
    "history": ("history", "Show the history of an image, or of past builds with --builds"),
    "save": ("save", "Save images to a docker-archive or OCI layout tarball"),
    "load": ("load", "Load images from a docker-archive or OCI layout tarball"),
    "import": ("import_", "Create an image from a root filesystem tarball"),
    "tag": ("tag", "Give an image another name"),
    "rmi": ("rmi", "Remove image names (and images no name refers to)"),
    "run": ("run", "Run a command in a new container"),
    "ps": ("ps", "List containers"),
    "logs": ("logs", "Show a container's output"),
    "stop": ("stop", "Stop running containers (SIGTERM, then SIGKILL)"),
    "kill": ("kill", "Send a signal to running containers"),
    "rm": ("rm", "Remove containers"),
    "pull": ("pull", "Pull an image from a registry"),
    "push": ("push", "Push an image to a registry"),
    "login": ("login", "Store credentials for a registry"),
    "logout": ("logout", "Remove stored credentials for a registry"),
    "pin": ("pin", "Rewrite FROM lines to name:tag@sha256:... digests"),
    "analyze": ("analyze", "Explain what each layer of an image costs and wastes"),
    "diff": ("diff", "Compare two images layer by layer and file by file"),
    "explain": ("explain", "Explain why steps of a build missed the cache"),
    "cache": ("cache", "List and measure build cache entries"),
    "prune": ("prune", "Remove unused blobs, cache entries and stale state"),
    "info": ("info", "Show how pybuild runs here: rootless or root, id maps, overlay, network, cgroups"),
    "serve": ("serve", "Answer the Docker Engine API (docker build, images, run) on a socket"),
}


def _top_help() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        f"Usage: {PROG} [OPTIONS] COMMAND [ARGS...]",
        f"       {PROG} -t NAME[:TAG] [BUILD OPTIONS] CONTEXT    (same as `{PROG} build`)",
        "",
        "A daemonless Dockerfile image builder.",
        "",
        "Commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += [
        "",
        "Global options:",
        "  --root DIR   image store location (default $PYBUILD_ROOT, /var/lib/pybuild as root,",
        "               ~/.local/share/pybuild otherwise)",
        "  --rootless   run in a user namespace as an ordinary user does (the default when not root;",
        "               also $PYBUILD_ROOTLESS=1)",
        "  --userns MODE  rootless id mapping: auto (the user's /etc/subuid and /etc/subgid ranges) or",
        "               single (only uid 0 inside images); also $PYBUILD_USERNS",
        "  --debug      show tracebacks for errors",
        "  --version    print the version and exit",
        "  -h, --help   show this help",
        "",
        f"Run '{PROG} COMMAND --help' for more information on a command.",
    ]
    return "\n".join(lines)


def make_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser of one subcommand, configured by its module."""
    from builder.commands._parser import Parser

    module_name, summary = COMMANDS[name]
    module = importlib.import_module(f"builder.commands.{module_name}")
    parser = Parser(prog=f"{PROG} {name}", description=summary, allow_abbrev=False)
    module.configure(parser)
    parser.set_defaults(_run=module.run)
    return parser


def _split_globals(argv: list[str]) -> tuple[list[str], bool]:
    """Pull the global options (--debug, --root, --rootless, --userns) out of argv (they may appear anywhere)."""
    debug = False
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--debug":
            debug = True
        elif arg == "--root":
            os.environ["PYBUILD_ROOT"] = next(it, "")
        elif arg.startswith("--root="):
            os.environ["PYBUILD_ROOT"] = arg.split("=", 1)[1]
        elif arg == "--rootless":
            os.environ["PYBUILD_ROOTLESS"] = "1"
        elif arg == "--userns":
            os.environ["PYBUILD_USERNS"] = next(it, "")
        elif arg.startswith("--userns="):
            os.environ["PYBUILD_USERNS"] = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, debug


NO_USER_NAMESPACE = ("parse", "login", "logout", "info")  # they touch no image file (info probes in a child)


def _rootless(name: str, debug: bool = False) -> None:
    """When rootless (not root, or asked to be), enter the user namespace the command runs in. A build
    enters it itself once its no-op memo missed (`build.runner`): a cached rebuild needs none."""
    if os.geteuid() == 0 and os.environ.get("PYBUILD_ROOTLESS", "").lower() not in ("1", "true", "yes", "on"):
        return  # root: nothing to import
    if os.geteuid() == 0:
        from runtime.userns import in_user_namespace

        if in_user_namespace():
            return
    from builder.util.paths import user_root_dir

    os.environ.setdefault("PYBUILD_ROOT", user_root_dir())
    if name == "build":
        return
    from runtime import userns

    plan = userns.enter(os.environ.get("PYBUILD_USERNS") or "auto")
    if debug:
        from runtime import overlay

        maps = ", ".join(f"{m.container}-{m.container + m.size - 1}->{m.host}" for m in plan.uids)
        sys.stderr.write(f"{PROG}: rootless ({plan.mode}: uids {maps}), overlay driver {overlay.driver()}\n")


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: {message}\n" if not message.startswith(PROG) else message + "\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pybuild` console script; returns the exit code."""
    raw, environ = list(sys.argv[1:] if argv is None else argv), dict(os.environ)  # before globals set variables
    args_in, debug = _split_globals(raw)
    if not args_in or args_in[0] in ("-h", "--help", "help"):
        print(_top_help())
        return 0  # as docker: its help with no command is not an error
    if args_in[0] == "--version":
        from importlib.metadata import version

        print(f"{PROG} {version('pybuild')}")
        return 0
    name = args_in[0] if args_in[0] in COMMANDS else "build"
    rest = args_in[1:] if args_in[0] in COMMANDS else args_in
    if rest is args_in and len(rest) == 1 and rest[0] != "-" and not os.path.exists(rest[0]):
        return _fail(f"'{rest[0]}' is not a {PROG} command nor a build context.\nSee '{PROG} --help'.", 1)
    try:
        replay_key = None
        if name == "build":  # a command line whose build was a no-op before: replayed before any parsing
            from builder.commands import build

            replay_key = build.replay_key(raw, environ)
            _rootless(name, debug)  # (where the store is; a build enters no namespace here)
            code = build.replay(replay_key) if replay_key is not None else None
            if code is not None:
                return code
        parser = make_parser(name)
        parser.set_defaults(_replay_key=replay_key)
        args = parser.parse_args(rest)
        if name not in NO_USER_NAMESPACE:
            _rootless(name, debug)
        return int(args._run(args) or 0)
    except UsageError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.code
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - mapped to exit codes below
        if debug:
            raise
        return _report(exc)


def _report(exc: Exception) -> int:
    """Print a user-facing error (no traceback) and return its exit code."""
    from builder.errors import BuildError
    from grammar.errors import DockerfileError
    from runtime.errors import SandboxError

    if isinstance(exc, (BuildError, DockerfileError, SandboxError)):
        sys.stderr.write(exc.render() + "\n")
        return getattr(exc, "exit_code", 1)
    if isinstance(exc, OSError) and exc.filename is not None:  # '' too: `pybuild parse ''`
        return _fail(f"{exc.strerror}: {exc.filename or repr(exc.filename)}", 1)
    from builder.util.atomic import WRITE_FAULTS

    if isinstance(exc, OSError) and exc.errno in WRITE_FAULTS:  # a full disk or a device error on a write
        return _fail(f"{exc.strerror} (run with --debug to see where)", 1)
    sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {exc}\n"
                     f"(run with --debug for a traceback)\n")
    return 70


def entry() -> NoReturn:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `pybuild images | head`: the reader left; no traceback, as other CLIs
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail too
        code = 141  # 128 + SIGPIPE, what a shell reports for a program killed by it
    sys.exit(code)


if __name__ == "__main__":
    entry()
