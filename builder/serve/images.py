"""Image endpoints: list (with filters), inspect, history, tag, delete, create (pull), push, get
(save), load, prune. Each answers in Docker's JSON shapes over the shared `Store`."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from builder.errors import InvalidReferenceError, StoreError
from builder.serve.api import ApiError, blocking, filters, json_response, qbool, status_of
from builder.serve.streams import TransferProgress, line


def routes(r: Any) -> None:
    r.add("GET", "/images/json", list_images)
    r.add("POST", "/images/create", create)
    r.add("POST", "/images/load", load)
    r.add("POST", "/images/prune", prune)
    r.add("GET", "/images/get", save)
    r.add("GET", "/images/{name:.+}/json", inspect)
    r.add("GET", "/images/{name:.+}/history", history)
    r.add("POST", "/images/{name:.+}/tag", tag)
    r.add("POST", "/images/{name:.+}/push", push)
    r.add("GET", "/images/{name:.+}/get", save)
    r.add("DELETE", "/images/{name:.+}", delete)


def _store(root: Path) -> Any:
    from builder.store import Store

    return Store.open(root)


def find(store: Any, name: str) -> Any:
    """The stored image `name` (tag, id, id prefix, name@digest); 404 as dockerd words it."""
    try:
        return store.resolve(name)
    except InvalidReferenceError as exc:
        raise ApiError(400, exc.message) from None
    except StoreError as exc:
        if "not in the store" in exc.message:
            raise ApiError(404, f"No such image: {name}") from None
        raise


def image_size(store: Any, image: Any) -> int:
    """The unpacked size: the layers' uncompressed tar sizes (what `pybuild images` shows)."""
    total = 0
    for layer in image.layers():
        try:
            total += store.layer_record(layer.diff_id).uncompressed_size or layer.size
        except StoreError:
            total += layer.size
    return total


def _epoch(created: str | None) -> int:
    if not created:
        return 0
    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def image_summaries(root: Path, wanted: dict[str, list[str]], all_images: bool = False) -> list[dict[str, Any]]:
    store = _store(root)
    out = []
    for rec in store.images():
        try:
            image = store.listed_image(rec.id)  # of a multi-platform index, this machine's image
            config = json.loads(image.raw_config())
        except (StoreError, ValueError):
            continue
        labels = (config.get("config") or {}).get("Labels") or {}
        summary = {"Id": rec.id, "ParentId": "", "RepoTags": list(rec.tags) or ["<none>:<none>"],
                   "RepoDigests": store.repo_digests(rec.id) or ([] if rec.tags else ["<none>@<none>"]),
                   "Created": _epoch(config.get("created")), "Size": image_size(store, image), "SharedSize": -1,
                   "VirtualSize": 0, "Labels": labels or None, "Containers": -1}
        summary["VirtualSize"] = summary["Size"]
        if _keep(summary, labels, rec.tags, wanted, store):
            out.append(summary)
    out.sort(key=lambda s: s["Created"], reverse=True)
    return out


def _keep(summary: dict[str, Any], labels: dict[str, str], tags: tuple[str, ...], wanted: dict[str, list[str]],
          store: Any) -> bool:
    for key, values in wanted.items():
        if key == "dangling":
            if any(v.lower() in ("true", "1") for v in values) == bool(tags):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        elif key == "reference":
            names = [t for t in tags] + [t.rpartition(":")[0] for t in tags]
            if not any(fnmatch.fnmatchcase(n, v) for v in values for n in names):
                return False
        elif key in ("before", "since"):
            for v in values:
                other = _epoch(json.loads(find(store, v).raw_config()).get("created"))
                if (key == "before" and not summary["Created"] < other) or (
                        key == "since" and not summary["Created"] > other):
                    return False
        else:
            raise ApiError(400, f"invalid filter '{key}'")
    return True


async def list_images(request: web.Request) -> web.Response:
    wanted = filters(request)
    if request.query.get("filter"):  # the old single-reference parameter
        wanted.setdefault("reference", []).append(request.query["filter"])
    return json_response(await blocking(request, image_summaries, request.app["root"], wanted,
                                            qbool(request, "all")))


_CONFIG_DEFAULTS = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
                    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
                    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                    "OnBuild": None, "Labels": None}


def describe(root: Path, name: str) -> dict[str, Any]:
    store = _store(root)
    image = find(store, name)
    config = json.loads(image.raw_config())
    size = image_size(store, image)
    return {
        "Id": image.id, "RepoTags": sorted(t for t, i in store.tags().items() if i == image.id),
        "RepoDigests": store.repo_digests(image.id), "Parent": "", "Comment": "",
        "Created": config.get("created") or "1970-01-01T00:00:00Z", "Container": "",
        "ContainerConfig": dict(_CONFIG_DEFAULTS), "DockerVersion": "", "Author": config.get("author", ""),
        "Config": {**_CONFIG_DEFAULTS, **(config.get("config") or {})},
        "Architecture": config.get("architecture", ""), **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Os": config.get("os", ""), "Size": size, "VirtualSize": size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": (config.get("rootfs") or {}).get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


async def inspect(request: web.Request) -> web.Response:
    return json_response(await blocking(request, describe, request.app["root"], request.match_info["name"]))


def _history(root: Path, name: str) -> list[dict[str, Any]]:
    store = _store(root)
    image = find(store, name)
    config = json.loads(image.raw_config())
    layers = list(image.layers())
    out, i = [], 0
    for h in config.get("history") or []:
        size = 0
        if not h.get("empty_layer") and i < len(layers):
            try:
                size = store.layer_record(layers[i].diff_id).uncompressed_size or layers[i].size
            except StoreError:
                size = layers[i].size
            i += 1
        out.append({"Id": "<missing>", "Created": _epoch(h.get("created")), "CreatedBy": h.get("created_by", ""),
                    "Tags": None, "Size": size, "Comment": h.get("comment", "")})
    out.reverse()
    if out:
        out[0]["Id"] = image.id
        out[0]["Tags"] = sorted(t for t, i in store.tags().items() if i == image.id) or None
    return out


async def history(request: web.Request) -> web.Response:
    return json_response(await blocking(request, _history, request.app["root"], request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    repo, tag_ = request.query.get("repo", ""), request.query.get("tag", "")
    if not repo:
        raise ApiError(400, "repository name (repo) must be given")
    target = f"{repo}:{tag_}" if tag_ else repo

    def work() -> str:
        store = _store(request.app["root"])
        image = find(store, request.match_info["name"])
        try:
            return str(store.tag(target, image.id))
        except InvalidReferenceError as exc:
            raise ApiError(400, exc.message) from None

    name = await blocking(request, work)
    request.app["events"].publish("image", "tag", name, name=name)
    return web.Response(status=201)


def _containers_using(root: Path, image_id: str) -> list[str]:
    from builder.containers import containers

    return [c.id for c in containers(root).list() if c.config.image == image_id]


def _delete(root: Path, name: str, force: bool) -> list[dict[str, str]]:
    """dockerd's rules: a tag is untagged, and its image deleted when no other tag names it; an id
    with several tags needs `force`; an image a container uses is a conflict unless `force`."""
    from builder.oci.reference import normalize_tag

    store = _store(root)
    image = find(store, name)
    tags = sorted(t for t, i in store.tags().items() if i == image.id)
    try:
        by_tag = normalize_tag(name) in tags
    except InvalidReferenceError:
        by_tag = False
    used = _containers_using(root, image.id)
    if by_tag and len(tags) > 1:
        store.untag(name)
        return [{"Untagged": normalize_tag(name)}]
    if not by_tag and len(tags) > 1 and not force:
        raise ApiError(409, f"conflict: unable to delete {image.id[7:19]} (must be forced) - image is referenced "
                            f"in multiple repositories")
    if used and not force:
        what = f"unable to remove repository reference \"{name}\"" if by_tag else f"unable to delete {image.id[7:19]}"
        raise ApiError(409, f"conflict: {what} (must force) - container {used[0][:12]} is using its referenced "
                            f"image {image.id[7:19]}")
    out = [{"Untagged": t} for t in store.remove_image(image.id)]
    out.append({"Deleted": image.id})
    return out


async def delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    result = await blocking(request, _delete, request.app["root"], name, qbool(request, "force"))
    bus = request.app["events"]
    for entry in result:
        if "Untagged" in entry:
            bus.publish("image", "untag", entry["Untagged"], name=entry["Untagged"])
        else:
            bus.publish("image", "delete", entry["Deleted"], name=name)
    return json_response(result)


def registry_auth(request: web.Request) -> None:
    """X-Registry-Auth: base64 JSON {username, password, serveraddress} or {identitytoken}."""
    raw = request.headers.get("X-Registry-Auth", "")
    if not raw:
        return
    try:
        auth = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) or b"{}")
    except ValueError:
        raise ApiError(400, "invalid X-Registry-Auth header: expected base64 JSON") from None
    if not isinstance(auth, dict) or not auth.get("serveraddress"):
        return
    from builder.registry.credentials import Credentials, use_in_process

    if auth.get("identitytoken"):
        use_in_process(auth["serveraddress"], Credentials("<token>", str(auth["identitytoken"])))
    elif auth.get("username") and auth.get("password"):
        use_in_process(auth["serveraddress"], Credentials(str(auth["username"]), str(auth["password"])))


def _reference(name: str, tag_: str) -> Any:
    from builder.oci.reference import parse_reference

    try:
        ref = parse_reference(name)
        if tag_:
            ref = ref.with_digest(tag_) if tag_.startswith("sha256:") else ref.with_tag(tag_)
        return ref if ref.tag or ref.digest else ref.with_default_tag()
    except InvalidReferenceError as exc:
        raise ApiError(400, exc.message) from None


async def create(request: web.Request) -> web.StreamResponse:
    """`docker pull`: `fromImage` with `tag`/`platform`; importing (`fromSrc`) is not supported."""
    from builder.errors import RegistryError

    if request.query.get("fromSrc"):
        raise ApiError(400, "importing a root filesystem (fromSrc) is not supported: use `pybuild import`")
    name = request.query.get("fromImage", "")
    if not name:
        raise ApiError(400, "fromImage must be given")
    ref = _reference(name, request.query.get("tag", ""))
    registry_auth(request)
    platform_text = request.query.get("platform", "")

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    progress = TransferProgress(loop, queue)

    def work() -> tuple[Any, bool]:
        from builder.oci.platform import parse as parse_platform
        from builder.transfer import pull

        store = _store(request.app["root"])
        before = {r.id for r in store.images()}
        result = pull(store, ref, platform=parse_platform(platform_text) if platform_text else None,
                      progress=progress)
        return result, bool(result.downloaded) or result.image.id not in before

    shown = ref.familiar()
    head = {"status": f"Pulling from {ref.repository.removeprefix('library/')}", "id": ref.tag or ref.digest}
    future = loop.run_in_executor(request.app["pool"], work)
    resp = await _relay(request, queue, future, head)  # no response yet: an early failure is an HTTP error
    try:
        result, new = await future
    except RegistryError as exc:
        status = 404 if exc.status == 404 or "MANIFEST_UNKNOWN" in exc.codes or "NAME_UNKNOWN" in exc.codes else 500
        if exc.status in (401, 403):
            status = 401
        if resp is None:
            raise ApiError(status, exc.message) from None
        await _put(resp, {"errorDetail": {"message": exc.message}, "error": exc.message})
        return resp
    except Exception as exc:  # noqa: BLE001 - after the first message, errors go in the stream
        if resp is None:
            raise
        text = status_of(exc)[1]
        await _put(resp, {"errorDetail": {"message": text}, "error": text})
        return resp
    if resp is None:
        resp = await _json_stream(request, head)
    for msg in ({"status": f"Digest: {result.digest}"},
                {"status": f"Status: {'Downloaded newer image' if new else 'Image is up to date'} for {shown}"}):
        await _put(resp, msg)
    request.app["events"].publish("image", "pull", result.image.id, name=shown)
    return resp


async def _relay(request: web.Request, queue: asyncio.Queue[dict[str, Any] | None], work: asyncio.Future[Any],
                 first: dict[str, Any], resp: web.StreamResponse | None = None) -> web.StreamResponse | None:
    """Stream what a transfer's progress queues until its `work` ends; without `resp`, the response
    (its headers and `first`) starts with the first message, so none is sent if there was none."""
    loop = asyncio.get_running_loop()
    work.add_done_callback(lambda _: loop.call_soon(queue.put_nowait, None))
    while (message := await queue.get()) is not None:
        if resp is None:
            resp = await _json_stream(request, first)
        await _put(resp, message)
    return resp


async def _json_stream(request: web.Request, first: dict[str, Any]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(line(first))
    return resp


async def _put(resp: web.StreamResponse, message: dict[str, Any]) -> None:
    try:
        await resp.write(line(message))
    except (ConnectionResetError, RuntimeError):
        pass  # the client left; the pull still completes into the store


async def push(request: web.Request) -> web.StreamResponse:
    """`docker push`: the layers' progress (`Pushing`, then `Pushed`, `Layer already exists` or
    `Mounted from ...`) as it happens, the digest line last; errors go in the stream, as dockerd's."""
    from builder.errors import BuildError

    ref = _reference(request.match_info["name"], request.query.get("tag", ""))
    registry_auth(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    progress = TransferProgress(loop, queue, "Pushing")

    def work() -> tuple[Any, int]:
        from builder.transfer import push as push_image

        store = _store(request.app["root"])
        source = ref.familiar()
        find(store, source)
        result = push_image(store, source, ref, progress=progress)
        return result, len(store.resolve(source).raw_manifest())

    resp = await _json_stream(request, {"status": f"The push refers to repository [{ref.name}]"})
    future = loop.run_in_executor(request.app["pool"], work)
    await _relay(request, queue, future, {}, resp)
    try:
        result, size = await future
    except (BuildError, ApiError) as exc:
        message = status_of(exc)[1]
        if isinstance(exc, ApiError) and exc.status == 404:
            message = f"An image does not exist locally with the tag: {ref.name}"
        await _put(resp, {"errorDetail": {"message": message}, "error": message})
        return resp
    await _put(resp, {"status": f"{ref.tag or 'latest'}: digest: {result.digest} size: {size}"})
    await _put(resp, {"progressDetail": {}, "aux": {"Tag": ref.tag or "", "Digest": str(result.digest),
                                                    "Size": size}})
    request.app["events"].publish("image", "push", str(result.digest), name=ref.familiar())
    return resp


async def save(request: web.Request) -> web.StreamResponse:
    """A docker-archive of the named images (`docker save`), written to disk, then streamed."""
    from builder.serve.listen import upload_dir

    names = [request.match_info["name"]] if "name" in request.match_info else request.query.getall("names", [])
    if not names:
        raise ApiError(400, "no image names given")

    def work() -> Path:
        from builder.oci.archive import write_docker_archive
        from builder.oci.reference import normalize_tag

        store = _store(request.app["root"])
        entries = []
        for name in names:
            image = find(store, name)
            tags: list[str] = []
            try:
                tags = [normalize_tag(name)] if store.tags().get(normalize_tag(name)) == image.id else []
            except InvalidReferenceError:
                pass
            entries.append((image, tags))
        out = upload_dir(request.app["root"]) / "images.tar"
        write_docker_archive(entries, out)
        return out

    path = await blocking(request, work)
    try:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                await resp.write(chunk)
        return resp
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


async def load(request: web.Request) -> web.StreamResponse:
    from builder.serve.build import receive_body
    from builder.serve.listen import upload_dir

    app = request.app
    work = await blocking(request, upload_dir, app["root"])
    try:
        body = work / "images.tar"
        await receive_body(request, body, app["options"].max_body)

        def do_load() -> list[tuple[str, list[str]]]:
            from builder.errors import ImageFormatError
            from builder.transfer import load as load_archive

            try:
                return load_archive(_store(app["root"]), body)
            except ImageFormatError as exc:
                raise ApiError(400, exc.message) from None

        results = await blocking(request, do_load)
    finally:
        await blocking(request, shutil.rmtree, work, True)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for image_id, tags in results:
        for t in tags:
            await resp.write(line({"stream": f"Loaded image: {t}\n"}))
            app["events"].publish("image", "load", image_id, name=t)
        if not tags:
            await resp.write(line({"stream": f"Loaded image ID: {image_id}\n"}))
            app["events"].publish("image", "load", image_id)
    return resp


async def prune(request: web.Request) -> web.Response:
    """Dangling images by default; with `dangling=false`, every image no container uses."""
    wanted = filters(request)
    every = any(v.lower() in ("false", "0") for v in wanted.get("dangling", []))

    def work() -> dict[str, Any]:
        from builder.cache.policy import build_cache_roots
        from builder.containers import containers

        store = _store(request.app["root"])
        untagged = []
        if every:
            used = {c.config.image for c in containers(request.app["root"]).list()}
            for t, image_id in store.tags().items():
                if image_id not in used:
                    store.untag(t)
                    untagged.append(t)
        report = store.prune(roots=[build_cache_roots(request.app["root"])])
        return {"ImagesDeleted": [{"Untagged": t} for t in untagged] + [{"Deleted": i} for i in report.images]
                or None, "SpaceReclaimed": report.bytes_freed}

    result = await blocking(request, work)
    for entry in result["ImagesDeleted"] or []:
        if "Deleted" in entry:
            request.app["events"].publish("image", "delete", entry["Deleted"])
    return json_response(result)


