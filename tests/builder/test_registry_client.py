"""The distribution client against a real docker-registry: auth modes, TLS, uploads, faults."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from builder.errors import DigestMismatchError, RegistryError
from builder.registry.credentials import Credentials
from builder.oci.model import Descriptor, Digest
from builder.registry.client import RegistryClient
from builder.registry.transport import RegistryOptions

from tests.builder.registry_server import PASSWORD, REFRESH_TOKEN, USER, FaultProxy, Registry, needs_registry

pytestmark = needs_registry
FAST = dict(backoff=0.01, max_backoff=0.05)


def _blob(tmp_path: Path, size: int) -> tuple[Path, Descriptor]:
    data = os.urandom(size)
    path = tmp_path / f"blob-{size}"
    path.write_bytes(data)
    return path, Descriptor("application/octet-stream", Digest.of(data), size)


def _repo() -> str:
    return f"test/{uuid.uuid4().hex[:10]}"


def _client(reg: Registry, creds: Credentials | None = None, **opts: object) -> RegistryClient:
    certs = (str(reg.certs_dir),) if reg.certs_dir else ()
    return RegistryClient(reg.host, RegistryOptions(certs_dirs=certs, **{**FAST, **opts}), credentials=creds)


def _roundtrip(client: RegistryClient, tmp_path: Path, size: int = 200_000, chunk: int = 64 << 20) -> None:
    src, desc = _blob(tmp_path, size)
    repo, other = _repo(), _repo()
    assert not client.has_blob(repo, desc.digest)
    client.upload_blob(repo, desc, src, chunk_size=chunk)
    assert client.has_blob(repo, desc.digest)
    assert client.mount_blob(other, desc.digest, repo)
    out = tmp_path / "out"
    client.download_blob(other, desc, out)
    assert out.read_bytes() == src.read_bytes()
    manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":' \
               + f'{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{desc.digest}","size":{size}}}'.encode() \
               + b',"layers":[]}'
    digest = client.put_manifest(other, "v1", manifest, "application/vnd.oci.image.manifest.v1+json")
    data, media_type, got = client.get_manifest(other, "v1")
    assert (data, media_type, got) == (manifest, "application/vnd.oci.image.manifest.v1+json", digest)
    assert client.head_manifest(other, "v1").digest == digest
    assert client.head_manifest(other, "nope") is None
    assert client.tags(other) == ["v1"]


def test_plain_http_monolithic_and_chunked(registry: Registry, tmp_path: Path) -> None:
    client = _client(registry)
    _roundtrip(client, tmp_path)
    _roundtrip(client, tmp_path, size=300_000, chunk=100_000)  # three PATCH chunks
    assert client.base.startswith("http://")


def test_basic_auth(basic_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    with pytest.raises(RegistryError) as exc:
        _client(basic_registry).has_blob("x/y", Digest.of(b""))
    assert exc.value.status == 401 and "pybuild login" in (exc.value.hint or "")
    with pytest.raises(RegistryError) as exc:
        _client(basic_registry, Credentials(USER, "wrong")).has_blob("x/y", Digest.of(b""))
    assert exc.value.status == 401
    _roundtrip(_client(basic_registry, Credentials(USER, PASSWORD)), tmp_path)


def test_token_auth_anonymous_pull_and_scoped_cache(token_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    server = token_registry.token_server
    authed = _client(token_registry, Credentials(USER, PASSWORD))
    src, desc = _blob(tmp_path, 1000)
    repo = _repo()
    before = len(server.requests)
    authed.upload_blob(repo, desc, src)
    for _ in range(3):
        assert authed.has_blob(repo, desc.digest)
    scopes = [r["scopes"] for r in server.requests[before:]]
    # one token per scope set, reused: pull (HEAD) and pull,push (upload)
    assert sorted(map(tuple, scopes)) == [(f"repository:{repo}:pull",), (f"repository:{repo}:pull,push",)]
    assert all(r["user"] == USER and r["service"] == server.service for r in server.requests[before:])

    anon = _client(token_registry)  # docker_config is empty: anonymous
    out = tmp_path / "anon"
    anon.download_blob(repo, desc, out)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(RegistryError) as exc:
        anon.upload_blob(_repo(), desc, src)
    assert exc.value.status == 401 and "pybuild login" in (exc.value.hint or "")

    with pytest.raises(RegistryError, match="token server refused"):
        _client(token_registry, Credentials(USER, "bad")).has_blob(repo, desc.digest)


def test_token_is_renewed_when_it_expires(token_registry: Registry, docker_config: Path) -> None:
    import time

    server = token_registry.token_server
    server.expires_in = 4  # kept for 2 s (half the lifetime when it is shorter than the safety margin)
    try:
        client = _client(token_registry)
        before = len(server.requests)
        client.has_blob("exp/repo", Digest.of(b"x"))
        client.has_blob("exp/repo", Digest.of(b"x"))
        assert len(server.requests) - before == 1  # cached
        time.sleep(2.1)
        client.has_blob("exp/repo", Digest.of(b"x"))
        assert len(server.requests) - before == 2  # renewed before it ran out
    finally:
        server.expires_in = 300


def test_tls_with_custom_ca(tls_registry: Registry, tmp_path: Path) -> None:
    client = _client(tls_registry)
    _roundtrip(client, tmp_path)
    assert client.base.startswith("https://")
    untrusted = RegistryClient(tls_registry.host, RegistryOptions(certs_dirs=(), **FAST))
    with pytest.raises(RegistryError) as exc:
        untrusted.has_blob("a/b", Digest.of(b""))
    assert "certificate" in str(exc.value).lower() and "certs.d" in (exc.value.hint or "")
    insecure = RegistryClient(tls_registry.host, RegistryOptions(certs_dirs=(), insecure=frozenset({tls_registry.host}), **FAST))
    assert insecure.has_blob("a/b", Digest.of(b"")) is False


def test_non_loopback_plain_http_needs_insecure(registry: Registry) -> None:
    opts = RegistryOptions(**FAST)
    assert opts.may_use_http("localhost:5000") and opts.may_use_http("127.0.0.1:1") and opts.may_use_http("[::1]:5")
    assert not opts.may_use_http("registry.example:5000")
    assert RegistryOptions(insecure=frozenset({"registry.example:5000"})).may_use_http("registry.example:5000")


# -- faults -----------------------------------------------------------------------------------

def _via(proxy: FaultProxy, **opts: object) -> RegistryClient:
    return RegistryClient(proxy.host, RegistryOptions(**{**FAST, **opts}))


def _pushed(registry: Registry, tmp_path: Path, size: int = 500_000) -> tuple[str, Path, Descriptor]:
    src, desc = _blob(tmp_path, size)
    repo = _repo()
    _client(registry).upload_blob(repo, desc, src)
    return repo, src, desc


def test_retries_500_and_429_with_retry_after(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src, desc = _pushed(registry, tmp_path)
    fault_proxy.add(r"GET /v2/.*/blobs/", "500", times=2)
    fault_proxy.add(r"GET /v2/.*/blobs/", "429", times=1)
    out = tmp_path / "out"
    _via(fault_proxy).download_blob(repo, desc, out)
    assert out.read_bytes() == src.read_bytes()
    blob_gets = [line for line in fault_proxy.log if "/blobs/" in line and line.startswith("GET")]
    assert blob_gets[:3] == [blob_gets[0].split(" !")[0] + s for s in (" !500", " !500", " !429")] and len(blob_gets) == 4


def test_resume_after_reset_mid_blob(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src, desc = _pushed(registry, tmp_path, size=2_000_000)
    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "reset", times=2)
    seen: list[int] = []
    out = tmp_path / "out"
    _via(fault_proxy).download_blob(repo, desc, out, progress=seen.append)
    assert out.read_bytes() == src.read_bytes()
    assert sum(seen) == desc.size
    ranges = [r for r in fault_proxy.ranges if r]
    assert len(ranges) == 2 and all(r.startswith("bytes=") and r != "bytes=0-" for r in ranges)  # resumed, not restarted


def test_restart_when_the_registry_ignores_range(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src, desc = _pushed(registry, tmp_path, size=2_000_000)
    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "reset", times=1)
    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "norange", times=1)
    seen: list[int] = []
    out = tmp_path / "out"
    _via(fault_proxy).download_blob(repo, desc, out, progress=seen.append)
    assert out.read_bytes() == src.read_bytes()
    assert sum(seen) == desc.size and min(seen) < 0  # progress rolled back when the body started over
    assert fault_proxy.ranges[1].startswith("bytes=")  # it asked to resume, got the whole blob, restarted


def test_corrupt_body_is_retried_then_refused(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src, desc = _pushed(registry, tmp_path)
    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "corrupt", times=1)
    out = tmp_path / "out"
    _via(fault_proxy).download_blob(repo, desc, out)
    assert out.read_bytes() == src.read_bytes()

    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "corrupt", times=100)
    bad = tmp_path / "bad"
    with pytest.raises(DigestMismatchError, match="nothing was stored"):
        _via(fault_proxy, retries=2).download_blob(repo, desc, bad)
    assert not bad.exists()


def test_gives_up_after_retry_budget(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    fault_proxy.add(r"HEAD /v2/.*/blobs/", "500", times=100)
    with pytest.raises(RegistryError) as exc:
        _via(fault_proxy, retries=2).has_blob("a/b", Digest.of(b"x"))
    assert exc.value.status == 500 and exc.value.temporary
    assert sum("HEAD" in line for line in fault_proxy.log) == 3


def test_upload_survives_faults(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    src, desc = _blob(tmp_path, 300_000)
    repo = _repo()
    fault_proxy.add(r"PATCH /v2/", "500", times=1)
    fault_proxy.add(r"PUT /v2/.*/blobs/uploads/", "refuse", times=1)
    client = _via(fault_proxy)
    client.upload_blob(repo, desc, src, chunk_size=100_000)
    assert _client(registry).has_blob(repo, desc.digest)
    out = tmp_path / "out"
    _client(registry).download_blob(repo, desc, out)
    assert out.read_bytes() == src.read_bytes()


def test_options_from_config_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "config.json"
    conf.write_text('{"insecure-registries": ["reg.example:5000", "other.example"]}')
    monkeypatch.setenv("PYBUILD_CONFIG", str(conf))
    monkeypatch.setenv("PYBUILD_INSECURE_REGISTRIES", "env.example:1")
    opts = RegistryOptions.load(["flag.example"])
    for host in ("reg.example:5000", "other.example:443", "env.example:1", "flag.example"):
        assert opts.is_insecure(host) and opts.may_use_http(host)
    assert not opts.is_insecure("reg.example:5001")
    conf.write_text("[not json")
    with pytest.raises(RegistryError, match="cannot read registry settings"):
        RegistryOptions.load()


def test_cli_tls_registry_needs_ca_or_insecure(tls_registry: Registry, busybox_store: Path, tmp_path: Path) -> None:
    from builder.oci.reference import parse_reference
    from builder.transfer import push
    from builder.store import Store
    from tests.conftest import pybuild

    name = f"{tls_registry.host}/tls/{uuid.uuid4().hex[:8]}:1"
    push(Store.open(busybox_store), "busybox:latest", parse_reference(name),
         options=RegistryOptions(certs_dirs=(str(tls_registry.certs_dir),), **FAST))
    env = {"PYBUILD_ROOT": str(tmp_path / "s1"), "PYBUILD_CERTS_DIR": str(tmp_path / "no-certs")}
    refused = pybuild("pull", name, check=False, env=env)
    assert refused.returncode == 1 and "certificate verify failed" in refused.stderr.lower()
    assert "certs.d" in refused.stderr and "Traceback" not in refused.stderr
    pybuild("pull", "--insecure-registry", tls_registry.host, name, env=env)
    pybuild("pull", name, env={"PYBUILD_ROOT": str(tmp_path / "s2"), "PYBUILD_CERTS_DIR": str(tls_registry.certs_dir)})


def test_token_auth_with_identity_token(token_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    """Credentials stored as an identity token use the OAuth2 refresh_token grant (POST to the realm)."""
    import base64
    import json

    (docker_config / "config.json").write_text(json.dumps({"auths": {token_registry.host: {
        "auth": base64.b64encode(b"<token>:").decode(), "identitytoken": REFRESH_TOKEN}}}))
    server = token_registry.token_server
    before = len(server.requests)
    client = RegistryClient(token_registry.host, RegistryOptions(**FAST))  # credentials from config.json
    _roundtrip(client, tmp_path, size=5000)
    assert server.requests[before:] and all(r.get("grant") == "refresh_token" for r in server.requests[before:])


def test_blob_redirect_is_followed_without_credentials(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src, desc = _pushed(registry, tmp_path, size=1_500_000)
    fault_proxy.add(r"GET /v2/.*/blobs/sha256", "redirect", times=1)
    out = tmp_path / "out"
    _via(fault_proxy).download_blob(repo, desc, out)
    assert out.read_bytes() == src.read_bytes()
    assert sum(" !redirect" in line for line in fault_proxy.log) == 1  # then fetched from the registry itself


def test_https_and_http_through_a_proxy(tls_registry: Registry, registry: Registry, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY tunnels (CONNECT) with TLS verified end to end; HTTP_PROXY gets absolute URIs;
    NO_PROXY and loopback hosts bypass the proxy."""
    import shutil

    from tests.builder.registry_server import TunnelProxy

    proxy = TunnelProxy({"registry.test": "127.0.0.1"})
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://{proxy.address}")
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.address}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        tls_name = "registry.test:" + tls_registry.host.rsplit(":", 1)[1]
        certs = tmp_path / "certs.d"
        shutil.copytree(tls_registry.certs_dir / tls_registry.host, certs / tls_name)
        client = RegistryClient(tls_name, RegistryOptions(certs_dirs=(str(certs),), **FAST))
        _roundtrip(client, tmp_path, size=100_000)
        assert client.base == f"https://{tls_name}" and f"CONNECT {tls_name}" in proxy.seen

        http_name = "registry.test:" + registry.host.rsplit(":", 1)[1]  # not loopback: needs --insecure-registry
        plain = RegistryClient(http_name, RegistryOptions(insecure=frozenset({http_name}), **FAST))
        _roundtrip(plain, tmp_path, size=100_000)
        assert plain.base == f"http://{http_name}" and f"GET {http_name}" in proxy.seen

        before = list(proxy.seen)
        _roundtrip(_client(registry), tmp_path, size=1000)  # 127.0.0.1: never proxied
        monkeypatch.setenv("NO_PROXY", "registry.test")
        with pytest.raises(RegistryError):  # bypassed: registry.test does not resolve here
            RegistryClient(tls_name, RegistryOptions(certs_dirs=(str(certs),), **{**FAST, "retries": 0})).ping()
        assert proxy.seen == before
    finally:
        proxy.close()
