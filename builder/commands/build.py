"""`pybuild build`: the flags of `docker build` / `docker buildx build`.

The cached no-op path stays lean: the Dockerfile's parse comes from a pickle keyed by its hash
(no lark), progress is plain text (tqdm only on a TTY), and no HTTP client is imported.
"""

from __future__ import annotations

import argparse
import json
import os
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
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET|KEY[,KEY]]",
                   help="expose an SSH agent (default: $SSH_AUTH_SOCK) or keys to RUN --mount=type=ssh")
    p.add_argument("--cache-from", action="append", default=[], metavar="type=registry,ref=REF", help="import build cache from a registry or directory")
    p.add_argument("--cache-to", action="append", default=[], metavar="type=registry,ref=REF", help="export build cache to a registry or directory")
    p.add_argument("--iidfile", metavar="FILE", help="write the image id to FILE")
    p.add_argument("--metadata-file", metavar="FILE", help="write build result metadata to FILE")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="allow an extra privilege: security.insecure (RUN --security=insecure), network.host")
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
        if not key or any(c.isspace() for c in key):  # any other name an ARG can declare (`ARG my-arg`)
            raise BuildError(f"invalid --build-arg {item!r}: the name must be non-empty, without blanks",
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


ENTITLEMENTS = ("security.insecure", "network.host")


def parse_allow(values: list[str]) -> frozenset[str]:
    """`--allow` entitlements (comma-separated or repeated), as buildx names them."""
    out = {v.strip() for value in values for v in value.split(",") if v.strip()}
    for v in sorted(out):
        if v not in ENTITLEMENTS:
            raise BuildError(f"invalid --allow {v!r}: expected {' or '.join(ENTITLEMENTS)}")
    return frozenset(out)


def check_entitlements(graph: Any, allow: frozenset[str]) -> None:
    """Refuse a build whose steps need an entitlement that `--allow` did not grant (cached or not):
    `RUN --security=insecure` needs security.insecure, `RUN --network=host` network.host (as buildx)."""
    from builder.errors import StepError
    from builder.build.graph import Exec

    for idx in sorted(graph.stages):
        for node in graph.stages[idx].nodes:
            op, o = node.op, node.origin
            if not isinstance(op, Exec):
                continue
            needs = [("--security=insecure", "security.insecure")] if op.security == "insecure" else []
            needs += [("--network=host", "network.host")] if op.network == "host" else []
            for flag, entitlement in needs:
                if entitlement not in allow:
                    raise StepError(f"RUN {flag} needs the {entitlement} entitlement", filename=o.filename,
                                    line=o.line, column=o.column, source_line=o.text,
                                    hint=f"pass --allow {entitlement} to grant it")


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
    from builder.build.context import open_context
    from builder.util.paths import default_root
    from builder.util.progress import make_progress

    started = time.time()
    if args.quiet:
        args.progress = "quiet"
    build_args = parse_build_args(args.build_arg)
    secrets = parse_secrets(args.secret)
    allow = parse_allow(args.allow)
    ssh = None
    if args.ssh:
        from builder.build.sources.ssh import SshAgents

        ssh = SshAgents.parse(args.ssh)
    outputs = parse_outputs(args.output, args.tag, args.push)
    labels = dict(x.partition("=")[::2] for x in args.label)
    cache_specs = None
    if args.cache_from or args.cache_to:  # parsed before the build so that a bad value fails fast
        from builder.cache.export import parse_cache_spec

        cache_specs = ([parse_cache_spec(v, export=False) for v in args.cache_from],
                       [parse_cache_spec(v, export=True) for v in args.cache_to])
    root = default_root()
    scratch = root / "tmp" / f"context-{os.getpid()}"
    ctx = open_context(args.context, dockerfile=args.file, scratch_dir=scratch)
    progress = make_progress(args.progress)
    try:
        memo_key = None
        if not (args.no_cache or args.no_cache_filter or args.pull or cache_specs) and outputs == [{"type": "image"}]:
            from builder.cache import memo

            memo_key = memo.memo_key(ctx.dockerfile, ctx.dockerfile_name, ctx.ignore_file, {
                "build_args": build_args, "target": args.target, "platform": args.platform, "labels": labels,
                "network": args.network, "epoch": os.environ.get("SOURCE_DATE_EPOCH"),
                **({"allow": sorted(allow)} if allow else {})})
            hit = memo.lookup(root, memo_key, ctx, args.tag) if ctx.root is not None else None
            if hit is not None:
                return _replay(args, root, ctx, hit, build_args, progress, started)
        from builder.cache.dockerfile import load_dockerfile
        from builder.store import Store

        store = Store.open(root)
        df = load_dockerfile(ctx.dockerfile, ctx.dockerfile_name, store.root)
        with store.lease():
            return _build(args, store, ctx, df, build_args, secrets, outputs, labels, progress, started, memo_key,
                          cache_specs, ssh)
    finally:
        progress.close()
        if ssh is not None:
            ssh.close()
        if scratch.exists():
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _new_record(args: argparse.Namespace, ctx: Any, build_args: dict[str, str], started: float,
                platform: str) -> Any:
    from builder.build import records
    from builder.util.sha import sha256

    if args.file and args.file != "-":
        dockerfile = os.path.abspath(args.file)  # as docs/build-records.md promises: -f is relative to the cwd
    elif ctx.root and args.file is None:
        dockerfile = str(Path(ctx.root, ctx.dockerfile_name))
    else:
        dockerfile = args.file or ctx.dockerfile_name
    return records.BuildRecord(
        records.new_build_id(), started, dockerfile, "sha256:" + sha256(ctx.dockerfile).hexdigest(),
        str(ctx.root) if ctx.root else "-", target=args.target or "", tags=list(args.tag),
        build_args=dict(build_args), platform=platform)


def _replay(args: argparse.Namespace, root: Path, ctx: Any, hit: dict[str, Any], build_args: dict[str, str],
            progress: Any, started: float) -> int:
    """Finish a build the memo recognised: show every step as cached, write its record."""
    from builder.build.records import StepRecord

    record = _new_record(args, ctx, build_args, started, hit["platform"])
    for w in hit["warnings"]:
        progress.info(f"WARNING: {w}")
    for step in hit["steps"]:
        progress.start(step["id"], hit["names"][str(step["id"])])
        (progress.done if step["kind"] == "FROM" else progress.cached)(step["id"])
        rec = StepRecord(**{**step, "cache": "hit", "reason": "", "duration": 0.0, "cpu_seconds": 0.0,
                            "memory_peak_bytes": 0, "output_bytes": 0})
        record.steps.append(rec)
    record.status, record.image_id, record.manifest_digest = "ok", hit["image_id"], hit["manifest_digest"]
    _finish(root, record)
    _report_result(args, hit["image_id"], hit["manifest_digest"], record.id, progress)
    return 0


def _build(args: argparse.Namespace, store: Any, ctx: Any, df: Any, build_args: dict[str, str],
           secrets: dict[str, bytes], outputs: list[dict[str, str]], labels: dict[str, str], progress: Any,
           started: float, memo_key: str | None, cache_specs: Any = None, ssh: Any = None) -> int:
    from builder.cache.keys import BuildCache
    from builder.build.convert import Options, convert
    from builder.build.solver import SolveOptions, Solver

    images: dict[tuple[str, str], Any] = {}

    def image(ref: str, platform: str) -> Any:
        """A base image: from the store (no registry import), or pulled when missing or with --pull."""
        if (ref, platform) not in images:
            images[ref, platform] = _base_image(store, ref, platform, args.pull, progress)
        return images[ref, platform]

    def resolve_image(ref: str, platform: str) -> dict[str, Any]:
        return image(ref, platform).config().config.to_dict()

    graph = convert(df, Options(build_args, args.target, args.platform or "", labels), resolve_image)
    check_entitlements(graph, parse_allow(args.allow))
    for w in graph.warnings:
        progress.info(f"WARNING: {w}")
    record = _new_record(args, ctx, build_args, started, graph.stages[graph.target].platform)
    compression, level = _compression(outputs)
    opts = SolveOptions(args.no_cache, frozenset(args.no_cache_filter), args.jobs or 0, secrets, args.pull,
                        args.network, compression or "uncompressed", level, ssh)
    cache = BuildCache(store.root)
    solver = Solver(graph, ctx, store, cache, progress, opts, record, image)
    try:
        if cache_specs:
            from builder.cache.export import import_cache

            for spec in cache_specs[0]:
                progress.info(f"importing cache from {spec.ref or spec.path}: {import_cache(store, cache, spec)} entries")
        built = assemble(store, solver.solve())
        manifest_digest = _write_outputs(store, built, outputs, args.tag, progress, compression, level)
        if cache_specs:
            from builder.cache.export import export_cache, keys_for_mode

            for spec in cache_specs[1]:
                export_cache(store, cache, keys_for_mode(record.steps, graph.target, spec.mode), spec)
                progress.info(f"exported cache to {spec.ref or spec.path}")
    except BaseException as exc:
        record.status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.error = (getattr(exc, "message", None) or str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        _finish(store.root, record)
        raise
    finally:
        solver.close()
    record.status, record.image_id, record.manifest_digest = "ok", str(built.id), str(manifest_digest)
    _finish(store.root, record)
    if memo_key is not None and ctx.root is not None and not solver.volatile:
        _save_memo(store, memo_key, args, images, solver, record, graph.warnings)
    _report_result(args, str(built.id), str(manifest_digest), record.id, progress)
    return 0


def _save_memo(store: Any, key: str, args: argparse.Namespace, images: dict[tuple[str, str], Any], solver: Any,
               record: Any, warnings: list[str]) -> None:
    """Remember this build's inputs so that an identical rebuild skips parsing and solving."""
    from builder.cache import memo
    from builder.errors import BuildError
    from builder.store import normalize_tag

    bases = {}
    for (ref, platform), image in images.items():
        try:
            tag = normalize_tag(ref)
        except BuildError:
            return  # a base by digest: not a tag we can re-check cheaply
        if platform:
            return
        bases[tag] = str(image.id)
    memo.save(store.root, key, {
        "bases": bases, "inputs": solver.inputs, "image_id": record.image_id,
        "manifest_digest": record.manifest_digest, "tags": [normalize_tag(t) for t in args.tag],
        "cli_tags": list(args.tag), "warnings": warnings,
        "platform": record.platform, "names": {str(k): v for k, v in solver.names.items()},
        "steps": [s.as_json() for s in record.steps]})


def _report_result(args: argparse.Namespace, image_id: str, manifest_digest: str, build_id: str,
                   progress: Any) -> None:
    if args.iidfile:
        Path(args.iidfile).write_text(image_id)
    if args.metadata_file:
        meta = {"containerimage.config.digest": image_id, "containerimage.digest": manifest_digest,
                "image.name": ",".join(args.tag), "buildx.build.ref": build_id}
        Path(args.metadata_file).write_text(json.dumps(meta, indent=2) + "\n")
    if args.quiet:
        print(image_id)
    else:
        for tag in args.tag:
            progress.info(f"naming to {tag} done")
        progress.info(f"writing image {image_id} done")


def _compression(outputs: list[dict[str, str]]) -> tuple[str | None, int | None]:
    """`compression=gzip|zstd|uncompressed` and `compression-level=N` of the outputs (one choice).

    None when not given: layers are then committed uncompressed (a build's cost is not a gzip of
    every layer, as with buildah) and compressed as gzip when exported or pushed.
    """
    chosen = {o["compression"] for o in outputs if o.get("compression")}
    if len(chosen) > 1:
        raise BuildError(f"--output: conflicting compression choices {sorted(chosen)}")
    compression = chosen.pop() if chosen else None
    if compression not in (None, "gzip", "zstd", "uncompressed"):
        raise BuildError(f"--output: unknown compression {compression!r} (gzip, zstd or uncompressed)")
    levels = {o["compression-level"] for o in outputs if o.get("compression-level")}
    try:
        level = int(levels.pop()) if levels else None
    except ValueError:
        raise BuildError("--output: compression-level must be a number") from None
    return compression, level


def _base_image(store: Any, ref: str, platform: str, pull: bool, progress: Any) -> Any:
    from builder.errors import StoreError

    if not pull:
        try:
            return store.resolve(ref)
        except StoreError:
            pass
    from builder.transfer import ensure_image

    return ensure_image(store, ref, platform or None, pull_always=pull)


def _finish(root: Path, record: Any) -> None:
    from builder.build import records

    record.finished = time.time()
    record.duration = round(record.finished - record.started, 6)
    record.steps.sort(key=lambda s: s.id)
    records.write(root, record)


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


def _write_outputs(store: Any, image: Any, outputs: list[dict[str, str]], tags: list[str], progress: Any,
                   compression: str | None = None, level: int | None = None) -> str:
    """Write the image to every `--output` (the store engineer's writers); return the manifest digest.

    The local image keeps the layers as committed; an OCI archive gets them compressed (gzip unless
    `compression=` says otherwise), and so does a push (`push_image`). The digest
    returned is the pushed manifest's if any, else the OCI archive's, else the local image's.
    """
    digest = exported = str(image.digest)
    for out in outputs:
        kind = out["type"]
        force = out.get("force-compression", "false").lower() in ("true", "1")  # buildx: convert every layer
        if kind == "image":
            store.put_image(image, tags)
        elif kind == "oci":
            from builder.oci.layout import write_oci_archive

            codec = compression or "gzip"
            packed = store.compressed_image(image, codec, level, force=force)
            write_oci_archive(packed, out["dest"], tags)
            exported = str(packed.digest)
        elif kind == "docker":
            from builder.oci.archive import write_docker_archive

            write_docker_archive(image, out["dest"], tags)
        elif kind == "local":
            from builder.oci.archive import export_rootfs_dir

            export_rootfs_dir(image, out["dest"])
        elif kind == "tar":
            from builder.oci.archive import export_rootfs_tar
            from builder.oci.mutate import source_date_epoch

            export_rootfs_tar(image, out["dest"], store.tmp_dir(), epoch=source_date_epoch())
        elif kind == "registry":
            from builder.oci.reference import parse_reference
            from builder.transfer import push_image

            names = [n for n in out.get("name", "").split(",") if n] or tags
            if not names:
                raise BuildError("--push needs a name: -t REGISTRY/NAME:TAG or --output type=registry,name=...")
            store.put_image(image)  # the blobs a push reads come from the store
            from builder.registry.transport import RegistryOptions

            for name in names:
                digest = str(push_image(store, image, parse_reference(name).with_default_tag(),
                                        options=RegistryOptions.load(), progress=progress,
                                        compression=compression or "gzip", level=level,
                                        force_compression=force).digest)
    return digest if any(o["type"] == "registry" for o in outputs) else exported
