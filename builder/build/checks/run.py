"""`pybuild check` / `build --check`: the checks of a build's Dockerfile without building it.

Base images are looked up in the local store, else their config is read from the registry (as
BuildKit's `load metadata` does, no layer is fetched); a stage whose base image is in neither has
an unknown environment, and UndefinedVar stays quiet in it rather than guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from builder.build.checks.walk import BaseInfo, CheckResult, lint

if TYPE_CHECKING:
    from builder.build.options import BuildOptions

__all__ = ["check_build", "base_info"]


def base_info(image: Any) -> BaseInfo:
    """The environment, SHELL and platform of a stored image (an `oci.image.Image`)."""
    cfg = image.config()
    env = dict(e.split("=", 1) for e in (cfg.config.env or ()) if "=" in e)
    platform = "/".join(p for p in (cfg.os, cfg.architecture, cfg.variant or "") if p)
    return BaseInfo(env, tuple(cfg.config.shell) if cfg.config.shell else None, platform)


def check_build(options: BuildOptions) -> CheckResult:
    """Lint the Dockerfile `options` name (every stage), with its build args and .dockerignore;
    raises the parse error of a file that does not parse (after nothing: there are no warnings)."""
    import grammar
    from builder.build.context import open_context
    from builder.build.options import parse_platforms
    from builder.errors import BuildError, StoreError
    from builder.store import Store
    from builder.util.paths import default_root

    ctx = open_context(options.context, dockerfile=options.dockerfile, stdin=options.stdin)
    text = grammar.decode(ctx.dockerfile, filename=ctx.dockerfile_name)
    df = grammar.parse(text, filename=ctx.dockerfile_name)
    store: Store | None = None
    seen: dict[tuple[str, str], BaseInfo | None] = {}

    def base_image(ref: str, platform: str) -> BaseInfo | None:
        nonlocal store
        if (ref, platform) not in seen:
            try:
                store = store or Store.open(default_root())
                seen[ref, platform] = base_info(store.resolve(ref))
            except (StoreError, BuildError, OSError):
                seen[ref, platform] = _remote_base(ref, platform)
        return seen[ref, platform]

    platforms = parse_platforms(options.platform)
    return lint(df, text, build_args=options.build_args, reachable=None,
                target_platform=platforms[0] if platforms else "", base_image=base_image, ignore=ctx.ignore)


def _remote_base(ref: str, platform: str) -> BaseInfo | None:
    """A base image's environment from its registry's config (None when it cannot be read)."""
    from builder.errors import BuildError
    from builder.oci.platform import parse
    from builder.oci.reference import parse_reference
    from builder.registry.remote import image
    from builder.registry.transport import RegistryOptions

    try:
        return base_info(image(parse_reference(ref), RegistryOptions.load(), parse(platform) if platform else None))
    except (BuildError, OSError, ValueError):
        return None
