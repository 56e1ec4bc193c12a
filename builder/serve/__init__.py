"""`pybuild serve`: the Docker Engine API (1.41, with version negotiation) over the pybuild store,
so that `DOCKER_HOST=unix:///run/pybuild.sock docker build -t app .` builds with pybuild.

    serve(ServeOptions(hosts=("unix:///run/pybuild.sock",), group="docker"))

The server is aiohttp (imported only here, so no other command pays for it). Handlers call the typed
APIs below (`builder.build.build`, the `Store` facade, `builder.transfer`, `builder.containers`),
never the CLI's argument parsing; blocking work runs in a thread pool and streams back as Docker's
JSON lines. Modules: `options` (what to listen on), `app` (routing, version prefix, errors),
`listen` (unix socket 0660 + group, TCP with TLS client verification), `system`, `build`,
`images`, `containers`, `events`, `streams` (JSON-line and multiplexed streams, progress).
"""

from __future__ import annotations

from builder.serve.options import ServeOptions

__all__ = ["ServeOptions", "serve"]


def serve(options: ServeOptions) -> None:
    """Listen on every host of `options` and answer until SIGINT/SIGTERM."""
    from builder.serve.app import run

    run(options)
