"""Share the build cache through a registry or a directory (`--cache-to` / `--cache-from`).

    --cache-to   type=registry,ref=REPO:TAG[,mode=min|max][,compression=gzip|zstd|uncompressed[,compression-level=N]]
                 |  type=local,dest=DIR[,mode=...][,compression=...]
    --cache-from type=registry,ref=REPO:TAG                   |  type=local,src=DIR

The cache travels as one OCI artifact: an image manifest whose config blob
(`application/vnd.pybuild.cache.config.v1+json`) lists the cache entries (key, parts, layer,
duration) and the inputs tables they name, and whose layers are the entries' layer blobs
(compressed, gzip by default as in buildx: a build keeps its own layers uncompressed). In a
registry it is pushed like an image (blobs first, manifest last); in a directory it is an OCI
layout. Importing writes the entries into the local `BuildCache` and stores their layers (each
checked against its digest and diff_id), so a fresh machine gets cache hits without running
the steps. Which keys to export (`mode=min`: the final stage's, `max`: every step's) is the
caller's choice: see `keys_for_mode`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from builder.cache.keys import KEY_VERSION, BuildCache, CacheKey, sha256_of
from builder.errors import BuildError, ImageFormatError, RegistryError
from builder.oci import compress
from builder.oci.model import OCI_MANIFEST, Descriptor, Digest, Manifest, canonical_json, loads_json
from builder.oci.reference import parse_reference
from builder.registry.client import client_for
from builder.transfer import _parallel, download_to_store
from builder.registry.transport import RegistryOptions
from builder.store import Store
from builder.util.atomic import atomic_file, write_atomic

__all__ = ["CacheSpec", "parse_cache_spec", "export_cache", "import_cache", "keys_for_mode", "CACHE_CONFIG_TYPE"]

CACHE_CONFIG_TYPE = "application/vnd.pybuild.cache.config.v1+json"
CACHE_ARTIFACT_TYPE = "application/vnd.pybuild.cache.v1"


@dataclass(frozen=True)
class CacheSpec:
    """A parsed `--cache-to` / `--cache-from` value."""

    type: str                 # registry | local
    ref: str = ""             # type=registry
    path: str = ""            # type=local: dest (export) or src (import)
    mode: str = "min"         # min | max (export only)
    compression: str = "gzip"  # gzip | zstd | uncompressed (export only)
    level: int | None = None   # compression-level


def parse_cache_spec(text: str, *, export: bool) -> CacheSpec:
    """Parse `type=registry,ref=R[,mode=max]` or `type=local,dest=DIR` (`src=DIR` for import).

    A bare value (`REPO:TAG`) means `type=registry,ref=REPO:TAG`, as in buildx.
    """
    flag = "--cache-to" if export else "--cache-from"
    if "=" not in text:
        text = f"type=registry,ref={text}"
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BuildError(f"invalid {flag} {text!r}: expected KEY=VALUE pairs separated by commas")
        fields[key.strip()] = value.strip()
    kind = fields.pop("type", "registry")
    mode = fields.pop("mode", "min")
    if mode not in ("min", "max"):
        raise BuildError(f"invalid {flag} {text!r}: mode must be min or max")
    compression = fields.pop("compression", compress.GZIP)
    if compression not in (compress.GZIP, compress.ZSTD, compress.NONE):
        raise BuildError(f"invalid {flag} {text!r}: compression must be gzip, zstd or uncompressed")
    level_text = fields.pop("compression-level", "")
    if level_text and not level_text.isdigit():
        raise BuildError(f"invalid {flag} {text!r}: compression-level must be a number")
    level = int(level_text) if level_text else None
    if kind == "registry":
        ref = fields.pop("ref", "")
        if not ref:
            raise BuildError(f"invalid {flag} {text!r}: type=registry needs ref=REPO:TAG")
        try:
            parse_reference(ref)  # a clear error now rather than after the build
        except BuildError as exc:
            raise BuildError(f"invalid {flag} {text!r}: {exc.message}", hint=exc.hint) from None
        spec = CacheSpec("registry", ref=ref, mode=mode, compression=compression, level=level)
    elif kind == "local":
        key = "dest" if export else "src"
        path = fields.pop(key, "")
        if not path:
            raise BuildError(f"invalid {flag} {text!r}: type=local needs {key}=DIR")
        spec = CacheSpec("local", path=path, mode=mode, compression=compression, level=level)
    else:
        raise BuildError(f"invalid {flag} {text!r}: type must be registry or local")
    fields.pop("oci-mediatypes", None)
    fields.pop("ignore-error", None)
    if fields:
        raise BuildError(f"invalid {flag} {text!r}: unknown option(s) {', '.join(sorted(fields))}")
    return spec


def keys_for_mode(steps: Iterable[Any], target_stage_index: int, mode: str) -> list[str]:
    """Cache keys to export from a build's step records: `max` every step, `min` the target stage's."""
    return [s.key for s in steps if s.key and (mode == "max" or s.stage_index == target_stage_index)]


# -- export -------------------------------------------------------------------------------------------

def _document(store: Store, cache: BuildCache, keys: Iterable[str], spec: CacheSpec) -> tuple[bytes, list[Descriptor]]:
    """The cache config blob and its layers; uncompressed layers travel as `spec.compression` copies."""
    entries, inputs, layers = [], {}, {}
    for key in dict.fromkeys(keys):
        entry = cache.get(key)
        if entry is None:
            continue
        layer = entry.layer
        if layer and store.has_blob(layer["digest"]):
            rec = store.compressed_layer(store.layer(layer), spec.compression, spec.level)
            layer = {**layer, "digest": str(rec.digest), "size": rec.size, "media_type": rec.media_type}
            layers[layer["digest"]] = rec.descriptor()
        entries.append({"key": entry.key, "parts": entry.parts, "layer": layer, "duration": entry.duration})
        for name, value in entry.parts:
            if name == "inputs" and isinstance(value, str) and value not in inputs:
                table = cache.inputs(value)
                if table is not None:
                    inputs[value] = table
    doc = {"version": 1, "key_version": KEY_VERSION, "entries": entries, "inputs": inputs}
    return canonical_json(doc), list(layers.values())


def _manifest(config: bytes, layers: list[Descriptor]) -> bytes:
    return canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": CACHE_ARTIFACT_TYPE,
        "config": Descriptor(CACHE_CONFIG_TYPE, Digest.of(config), len(config)).to_dict(),
        "layers": [d.to_dict() for d in layers],
    })


def export_cache(store: Store, cache: BuildCache, keys: Iterable[str], spec: CacheSpec,
                 options: RegistryOptions | None = None) -> Digest:
    """Export the entries for `keys` and their layers to `spec`; returns the cache manifest digest."""
    with store.lease():  # the compressed copies are referenced by nothing until the export ends
        config, layers = _document(store, cache, keys, spec)
        manifest = _manifest(config, layers)
        if spec.type == "local":
            return _export_local(store, Path(spec.path), config, layers, manifest)
        ref = parse_reference(spec.ref).with_default_tag()
        client = client_for(ref.registry, options)
        config_digest = store.put_bytes(config)
        blobs = [Descriptor(CACHE_CONFIG_TYPE, config_digest, len(config)), *layers]

        def send(desc: Descriptor) -> None:
            if not client.has_blob(ref.repository, desc.digest):
                client.upload_blob(ref.repository, desc, store.blob_path(desc.digest))

        _parallel(send, blobs)
        digest = client.put_manifest(ref.repository, ref.tag or "latest", manifest, OCI_MANIFEST)
        store.record_registry(ref.name, [d.digest for d in blobs])
    return digest


def _export_local(store: Store, dest: Path, config: bytes, layers: list[Descriptor], manifest: bytes) -> Digest:
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for desc in layers:
        target = blobs / desc.digest.hex
        if not target.exists():
            with atomic_file(target) as out, open(store.blob_path(desc.digest), "rb") as blob:
                shutil.copyfileobj(blob, out, 1 << 20)
    for data in (config, manifest):
        write_atomic(blobs / Digest.of(data).hex, data)
    digest = Digest.of(manifest)
    write_atomic(dest / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                            "artifactType": CACHE_ARTIFACT_TYPE,
                            "annotations": {"org.opencontainers.image.ref.name": "cache"}}]}
    write_atomic(dest / "index.json", canonical_json(index))  # last: the layout is complete before it names the cache
    return digest


# -- import -------------------------------------------------------------------------------------------

def import_cache(store: Store, cache: BuildCache, spec: CacheSpec, options: RegistryOptions | None = None) -> int:
    """Import the cache at `spec` into `cache` and the store; returns how many entries were added.

    A missing cache (first build, empty directory) imports nothing and is not an error.
    """
    with store.lease():
        if spec.type == "local":
            found = _read_local(Path(spec.path))
            if found is None:
                return 0
            manifest, open_blob = found
        else:
            ref = parse_reference(spec.ref).with_default_tag()
            client = client_for(ref.registry, options)
            try:
                raw, _mt, _digest = client.get_manifest(ref.repository, ref.identifier, accept=(OCI_MANIFEST,))
            except RegistryError as exc:
                if exc.status == 404:
                    return 0
                raise
            try:
                manifest = Manifest.from_json(raw)
            except ImageFormatError as exc:
                raise ImageFormatError(f"build cache {ref}: {exc.message}") from None

            def open_blob(desc: Descriptor) -> Path:
                download_to_store(store, client, ref.repository, desc)
                return store.blob_path(desc.digest)

        if manifest.config.media_type != CACHE_CONFIG_TYPE:
            raise ImageFormatError(f"{spec.ref or spec.path} is not a pybuild build cache "
                                   f"(config type {manifest.config.media_type})")
        raw_doc = open_blob(manifest.config).read_bytes()
        if Digest.of(raw_doc) != manifest.config.digest or len(raw_doc) != manifest.config.size:
            raise ImageFormatError(f"build cache {spec.ref or spec.path}: the config blob does not match its digest")
        doc = _load_doc(raw_doc, spec)
        by_digest = {str(d.digest): d for d in manifest.layers}
        wanted: dict[str, dict[str, Any]] = {}
        for entry in doc["entries"]:
            layer = entry.get("layer")
            if layer and layer.get("digest") in by_digest and not _has_layer(store, layer):
                wanted[layer["digest"]] = layer

        def fetch(desc: Descriptor) -> None:
            layer = wanted[str(desc.digest)]
            with open(open_blob(desc), "rb") as f:
                if os.fstat(f.fileno()).st_size != desc.size:
                    raise ImageFormatError(f"build cache {spec.ref or spec.path}: blob {desc.digest} is "
                                           f"{os.fstat(f.fileno()).st_size} bytes, its descriptor says {desc.size}")
                store.put_layer(f, desc.media_type, desc.digest, Digest(layer["diff_id"]))

        _parallel(fetch, [by_digest[d] for d in wanted])
        added = 0
        for digest, table in doc["inputs"].items():
            if cache.inputs(digest) is None and sha256_of(table) == digest:
                cache.put_inputs(table)
        for entry in doc["entries"]:
            layer = entry.get("layer")
            if layer and not _has_layer(store, layer):
                continue  # its layer did not come along: the entry would only be a miss later
            parts = tuple((str(k), v) for k, v in entry["parts"])
            key = CacheKey(parts, entry["key"])
            if sha256_of([KEY_VERSION, [list(p) for p in parts]]) != key.digest:
                continue  # written by another key version, or tampered with: never a false hit
            if cache.get(key.digest) is None:
                cache.put(key, layer, float(entry.get("duration") or 0.0))
                added += 1
    return added


def _has_layer(store: Store, layer: dict[str, Any]) -> bool:
    return store.has_blob(layer["digest"]) and store.has_layer_record(layer["diff_id"])


def _load_doc(data: bytes, spec: CacheSpec) -> dict[str, Any]:
    try:
        doc = loads_json(data, f"build cache {spec.ref or spec.path}")  # bounded size and depth
        if not isinstance(doc.get("entries"), list) or not isinstance(doc.get("inputs", {}), dict):
            raise ValueError("entries must be a list")
    except (ValueError, AttributeError) as exc:
        raise ImageFormatError(f"build cache {spec.ref or spec.path}: malformed: {exc}") from None
    doc.setdefault("inputs", {})
    return doc


def _read_local(src: Path) -> tuple[Manifest, Any] | None:
    index_path = src / "index.json"
    if not index_path.exists():
        return None
    try:
        index = loads_json(index_path.read_bytes(), f"{index_path}")
        desc = next(m for m in index["manifests"] if m.get("artifactType") == CACHE_ARTIFACT_TYPE
                    or (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == "cache")
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        raise ImageFormatError(f"{src}: not a pybuild cache directory (no cache entry in index.json)") from None

    def open_blob(d: Descriptor | dict[str, Any]) -> Path:
        digest = Digest(d.digest if isinstance(d, Descriptor) else d["digest"])
        path = src / "blobs" / "sha256" / digest.hex
        if not path.is_file():
            raise ImageFormatError(f"{src}: blob {digest} is missing")
        return path

    raw = open_blob(desc).read_bytes()
    if Digest.of(raw) != desc["digest"]:
        raise ImageFormatError(f"{src}: the cache manifest does not match its digest")
    return Manifest.from_json(raw), open_blob
