"""`pybuild build`: the flags of `docker build` / `docker buildx build`.

The cached no-op path stays lean: the Dockerfile's parse comes from a pickle keyed by its hash
(no lark), progress is plain text (tqdm only on a TTY), and no HTTP client is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from builder.errors import BuildError


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


# --- flag parsing ---------------------------------------------------------------------------------

def parse_build_args(values: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """`KEY=VALUE`, or `KEY` alone taking the value from the environment (dropped when unset)."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise BuildError(f"invalid --build-arg {item!r}: the name must be letters, digits and _",
                             hint="use --build-arg NAME=VALUE, or --build-arg NAME to take NAME from the environment")
        if eq:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def _kv_list(spec: str, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in spec.split(","):
        k, eq, v = part.partition("=")
        if not eq or not k:
            raise BuildError(f"invalid {flag} {spec!r}: expected KEY=VALUE pairs separated by commas")
        out[k.strip()] = v
    return out


def parse_secrets(values: list[str]) -> dict[str, bytes]:
    """`id=ID,src=FILE` or `id=ID,env=VAR` -> {id: value}. Values never reach logs or keys."""
    out: dict[str, bytes] = {}
    for spec in values:
        kv = _kv_list(spec, "--secret")
        sid = kv.get("id")
        src = kv.get("src") or kv.get("source")
        env = kv.get("env")
        if not sid:
            sid = env or (os.path.basename(src) if src else "")
        if not sid:
            raise BuildError(f"invalid --secret {spec!r}: needs id=ID")
        if src:
            try:
                out[sid] = Path(src).read_bytes()
            except OSError as exc:
                raise BuildError(f"--secret id={sid}: cannot read {src}: {exc.strerror}") from None
        else:
            var = env or sid
            if var not in os.environ:
                raise BuildError(f"--secret id={sid}: environment variable {var} is not set")
            out[sid] = os.environ[var].encode()
    return out


def parse_outputs(values: list[str], tags: list[str], push: bool) -> list[dict[str, str]]:
    """`--output` specs as dicts; a bare path means `type=local,dest=PATH`; `-t` implies `type=image`."""
    outs: list[dict[str, str]] = []
    for spec in values:
        if "=" not in spec.split(",")[0]:
            outs.append({"type": "local", "dest": spec})
            continue
        kv = _kv_list(spec, "--output")
        if kv.get("type") not in ("image", "oci", "docker", "local", "tar", "registry"):
            raise BuildError(f"invalid --output {spec!r}: type must be image, oci, docker, local, tar or registry")
        if kv["type"] in ("oci", "docker", "local", "tar") and not kv.get("dest"):
            raise BuildError(f"--output type={kv['type']} needs dest=PATH")
        outs.append(kv)
    if push:
        outs.append({"type": "registry"})
    if not any(o["type"] == "image" for o in outs) and (tags or not outs):
        outs.insert(0, {"type": "image"})
    return outs


# --- the build ------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from builder.context import open_context
    from builder.dockerfile_cache import load_dockerfile
    from builder.progress import make_progress

    try:
        from builder.store import Store
    except ImportError:  # the store (issue 4) has not landed yet
        from builder.errors import NotImplementedYet

        raise NotImplementedYet("pybuild build: the image store is not available yet (issue 4)") from None

    started = time.time()
    if args.quiet:
        args.progress = "quiet"
    build_args = parse_build_args(args.build_arg)
    secrets = parse_secrets(args.secret)
    outputs = parse_outputs(args.output, args.tag, args.push)
    labels = dict(x.partition("=")[::2] for x in args.label)
    if args.cache_from or args.cache_to:
        from builder.errors import NotImplementedYet

        raise NotImplementedYet("--cache-from/--cache-to: registry cache export is not implemented yet (issue 7)")
    store = Store.open()
    scratch = store.root / "tmp" / f"context-{os.getpid()}"
    ctx = open_context(args.context, dockerfile=args.file, scratch_dir=scratch)
    df = load_dockerfile(ctx.dockerfile, ctx.dockerfile_name, store.root)
    progress = make_progress(args.progress)
    try:
        return _build(args, store, ctx, df, build_args, secrets, outputs, labels, progress, started)
    finally:
        progress.close()
        if scratch.exists():
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _build(args: argparse.Namespace, store: Any, ctx: Any, df: Any, build_args: dict[str, str],
           secrets: dict[str, bytes], outputs: list[dict[str, str]], labels: dict[str, str], progress: Any,
           started: float) -> int:
    import hashlib

    from builder import records
    from builder.cache import BuildCache
    from builder.convert import Options, convert
    from builder.solver import SolveOptions, Solver

    def resolve_image(ref: str, platform: str) -> dict[str, Any]:
        return store.resolve(ref).config().config.to_dict()

    graph = convert(df, Options(build_args, args.target, args.platform or "", labels), resolve_image)
    for w in graph.warnings:
        progress.info(f"WARNING: {w}")
    record = records.BuildRecord(
        records.new_build_id(), started, str(Path(ctx.root, ctx.dockerfile_name)) if ctx.root and args.file is None
        else (args.file or ctx.dockerfile_name), "sha256:" + hashlib.sha256(ctx.dockerfile).hexdigest(),
        str(ctx.root) if ctx.root else "-", target=args.target or "", tags=list(args.tag),
        build_args={k: v for k, v in build_args.items()}, platform=graph.stages[graph.target].platform)
    opts = SolveOptions(args.no_cache, frozenset(args.no_cache_filter), args.jobs or 0, secrets, args.pull,
                        args.network)
    solver = Solver(graph, ctx, store, BuildCache(store.root), progress, opts, record)
    try:
        result = solver.solve()
        image = assemble(store, result)
        manifest_digest = _write_outputs(store, image, outputs, args.tag, progress)
    except BaseException as exc:
        record.status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.error = (getattr(exc, "message", None) or str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        _finish(store, record)
        raise
    record.status, record.image_id, record.manifest_digest = "ok", str(image.id), str(manifest_digest)
    _finish(store, record)
    image_id = str(image.id)
    if args.iidfile:
        Path(args.iidfile).write_text(image_id)
    if args.metadata_file:
        meta = {"containerimage.config.digest": image_id, "containerimage.digest": str(manifest_digest),
                "image.name": ",".join(args.tag), "buildx.build.ref": record.id}
        Path(args.metadata_file).write_text(json.dumps(meta, indent=2) + "\n")
    if args.quiet:
        print(image_id)
    else:
        for tag in args.tag:
            progress.info(f"naming to {tag} done")
        progress.info(f"writing image {image_id} done")
    return 0


def _finish(store: Any, record: Any) -> None:
    from builder import records

    record.finished = time.time()
    record.duration = round(record.finished - record.started, 6)
    record.steps.sort(key=lambda s: s.id)
    records.write(store.root, record)


def assemble(store: Any, result: Any) -> Any:
    """The target stage's image: base config + stage config, layers, history, created time."""
    from builder.oci.image import BasicImage
    from builder.oci.model import ContainerConfig, Digest, History, ImageConfig
    from builder.oci.mutate import rfc3339, source_date_epoch

    stage = result.stage
    epoch = source_date_epoch()
    created = rfc3339(epoch if epoch is not None else result.created)
    base_cfg = result.base_image.config() if result.base_image is not None else ImageConfig()
    cfg = dict(stage.config)
    author = cfg.pop("__author__", None)
    history = [History.from_dict(h) for h in result.history]
    os_, _, rest = stage.platform.partition("/")
    arch, _, variant = rest.partition("/")
    config = ImageConfig(architecture=arch or base_cfg.architecture, os=os_ or base_cfg.os,
                         variant=variant or None, created=created,
                         author=author if author is not None else base_cfg.author,
                         config=ContainerConfig.from_dict(cfg),
                         diff_ids=tuple(Digest(l["diff_id"]) for l in result.layers), history=tuple(history))
    layers = tuple(_store_layer(store, l) for l in result.layers)
    return BasicImage(config.to_json(), layers)


def _store_layer(store: Any, layer: dict[str, Any]) -> Any:
    return store.blob_layer(store.layer(layer["diff_id"]))


def _export_rootfs(store: Any, image: Any, dest: Path) -> None:
    """`--output type=local,dest=DIR`: the image's root filesystem, layers applied in order."""
    dest.mkdir(parents=True, exist_ok=True)
    for layer in image.layers():
        store.unpack_layer(layer, dest, overlay=False)


def _write_outputs(store: Any, image: Any, outputs: list[dict[str, str]], tags: list[str], progress: Any) -> str:
    """Write the image to every `--output`; return the manifest digest."""
    for out in outputs:
        kind = out["type"]
        if kind == "image":
            store.put_image(image, tags)
        elif kind == "oci":
            store.write_oci_archive(image, out["dest"], tags)
        elif kind == "docker":
            store.write_docker_archive(image, out["dest"], tags)
        elif kind == "local":
            _export_rootfs(store, image, Path(out["dest"]))
        elif kind == "tar":
            store.export_rootfs_tar(image, out["dest"])
        elif kind == "registry":
            from builder.errors import NotImplementedYet

            raise NotImplementedYet("--push / --output type=registry: use `pybuild push` after the build")
    return str(image.digest)
