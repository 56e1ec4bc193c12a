"""A client for the OCI distribution API (`/v2/`): manifests, blobs, uploads, tags.

    client = RegistryClient.for_reference(ref)        # one per registry host
    data, media_type, digest = client.get_manifest(ref.repository, ref.identifier)
    client.download_blob(ref.repository, descriptor, path)    # verified, resumable
    client.upload_blob(ref.repository, descriptor, path)      # HEAD skip, mount, PATCH chunks

Every request goes through `request()`: authentication (see auth.py), retries with backoff on
429/5xx and connection resets (honouring `Retry-After`), and registry error bodies turned into
`RegistryError(status, codes)`. Nothing here knows about the image store.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import os
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping, Protocol
from urllib.parse import urlencode, urljoin, urlsplit

from builder.errors import DigestMismatchError, RegistryError
from builder.registry import credentials as creds_mod
from builder.registry.auth import Authenticator, scope
from builder.registry.credentials import Credentials
from builder.oci.model import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Descriptor,
                               Digest)
from builder.oci.reference import Reference
from builder.registry.transport import RETRY_STATUSES, RegistryOptions, Response, Transport, is_connection_error

__all__ = ["RegistryClient", "BlobSink", "MANIFEST_ACCEPT", "CHUNK_THRESHOLD", "client_for"]

MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
CHUNK_THRESHOLD = 64 << 20   # blobs above this size are uploaded in PATCH chunks of this size
MANIFEST_MAX = 4 << 20       # the distribution spec's suggested limit for a manifest
BLOB_BYTES_MAX = 64 << 20    # the most `fetch_blob` reads into memory (image configs)
_READ = 1 << 20
_CLIENTS: dict[tuple[str, RegistryOptions], "RegistryClient"] = {}

Progress = Callable[[int], None]
Opener = Callable[[], IO[bytes]]


def client_for(registry: str, options: RegistryOptions | None = None) -> RegistryClient:
    """A shared client per registry and options (so tokens and connections are reused)."""
    opts = options or RegistryOptions.load()
    key = (registry, opts)
    if key not in _CLIENTS:
        _CLIENTS[key] = RegistryClient(registry, opts)
    return _CLIENTS[key]


def _error_codes(resp: Response) -> tuple[tuple[str, ...], str]:
    """The `errors` of a registry's JSON error body: their codes and a readable summary."""
    try:
        doc = json.loads(resp.read(limit=65536)) if "json" in resp.header("Content-Type") else {}
        errors = [e for e in (doc.get("errors") or []) if isinstance(e, dict)]
    except (OSError, ValueError, AttributeError, RecursionError, http.client.HTTPException):
        return (), ""
    return tuple(str(e.get("code", "")) for e in errors), "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)


class RegistryClient:
    """The distribution API of one registry (host[:port]), shared by threads."""

    def __init__(self, registry: str, options: RegistryOptions | None = None,
                 credentials: Credentials | None = None) -> None:
        self.registry = registry
        self.options = options or RegistryOptions.load()
        self.host = "registry-1.docker.io" if registry == "docker.io" else registry
        self.base = f"https://{self.host}"
        self.transport = Transport(self.options)
        given = credentials
        self.auth = Authenticator(registry, self._token_fetch,
                                  (lambda: given) if given is not None else (lambda: creds_mod.lookup(registry)))
        self._pinged = False

    @classmethod
    def for_reference(cls, ref: Reference, options: RegistryOptions | None = None) -> RegistryClient:
        return client_for(ref.registry, options)

    # -- plumbing -------------------------------------------------------------------------

    def _token_fetch(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, object]:
        resp = self._send_retrying(method, url, headers, body)
        if resp.status != 200:
            resp.close()
            return resp.status, None
        return resp.status, resp.json()

    def _send_retrying(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes | Callable[[], object] | None, deadline: float | None = None) -> Response:
        """One request, retried on connection trouble until the retry budget or `deadline`
        (time.monotonic(); default: the options' deadline from now) runs out."""
        import time

        deadline = deadline or time.monotonic() + self.options.deadline
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError("deadline passed")
                resp = self.transport.send(method, url, headers, body, timeout=remaining)  # type: ignore[arg-type]
            except (OSError, http.client.HTTPException) as exc:
                retry = is_connection_error(exc)
                if retry and time.monotonic() >= deadline - 0.01:
                    raise RegistryError(f"{self.registry}: {method} {urlsplit(url).path}: no answer within the "
                                        f"{self.options.deadline:g} s deadline (after {attempt + 1} tries: {exc})",
                                        temporary=True,
                                        hint="set a longer one with --timeout or PYBUILD_REGISTRY_TIMEOUT") from None
                if retry and attempt < self.options.retries:
                    attempt += 1
                    self.transport.backoff(attempt)
                    continue
                raise RegistryError(f"{self.registry}: {method} {urlsplit(url).path}: {exc}"
                                    + (f" (after {attempt + 1} tries)" if retry else ""),
                                    temporary=retry, hint=self._hint_for(exc)) from None
            if resp.status in RETRY_STATUSES and attempt < self.options.retries:
                retry_after = resp.header("Retry-After")
                resp.close()
                attempt += 1
                self.transport.backoff(attempt, retry_after)
                continue
            return resp

    def _hint_for(self, exc: BaseException) -> str | None:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return (f"put the registry's CA certificate in /etc/docker/certs.d/{self.registry}/ca.crt, "
                    f"or use --insecure-registry {self.registry} for plain http")
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return f"the registry may speak plain http: use --insecure-registry {self.registry}"
        if isinstance(exc, OSError) and exc.errno in (-2, -3, -5):  # socket.gaierror: no such host / no DNS
            return f"cannot resolve {self.host.rsplit(':', 1)[0]}: check the image name and the network"
        if isinstance(exc, ConnectionRefusedError):
            return f"is a registry listening at {self.host}?"
        return None

    def ping(self) -> None:
        """`GET /v2/`: find the scheme and learn how the registry wants us to authenticate (once).

        `https`, except that a loopback or --insecure-registry host that answers plain http like a
        registry is used over http (Docker allows both for them). Plain http is asked first there:
        a TLS handshake sent to a plain-http server can hang until the server gives up on it.
        """
        if self._pinged:
            return
        import time

        deadline = time.monotonic() + self.options.deadline  # both probes together
        resp = None
        if self.options.may_use_http(self.host):
            try:
                resp = self.transport.send("GET", f"http://{self.host}/v2/", {}, timeout=self.options.deadline)
            except ConnectionRefusedError as exc:
                raise RegistryError(f"{self.registry}: GET /v2/: {exc}", temporary=True,
                                    hint=self._hint_for(exc)) from None
            except (OSError, http.client.HTTPException):
                resp = None  # not http: try TLS
            if resp is not None and resp.status in (200, 401, 404):
                self.base = f"http://{self.host}"
            elif resp is not None:  # e.g. 400 "Client sent an HTTP request to an HTTPS server"
                resp.close(reuse=False)
                resp = None
        if resp is None:
            resp = self._send_retrying("GET", f"{self.base}/v2/", {}, None, deadline)
        status, challenge = resp.status, resp.header("WWW-Authenticate")
        resp.close()
        if status == 401:
            self.auth.set_challenge(challenge)
        elif status not in (200, 404):
            raise RegistryError(f"{self.registry}: GET /v2/ answered {status}; is this a registry?", status=status)
        self._pinged = True

    def request(self, method: str, path: str, *, scopes: Iterable[str], headers: Mapping[str, str] | None = None,
                body: bytes | Callable[[], object] | None = None, ok: Iterable[int] = (200,),
                what: str = "", deadline: float | None = None) -> Response:
        """An authenticated request (retried as configured); raises RegistryError unless status is in `ok`."""
        self.ping()
        scopes = tuple(scopes)
        url = path if path.startswith(("http://", "https://")) else self.base + path
        auth_tried, redirects = False, 0
        while True:
            hdrs = dict(headers or {})
            if urlsplit(url).netloc == urlsplit(self.base).netloc:  # credentials never go to another host
                authz = self.auth.header(scopes)
                if authz:
                    hdrs["Authorization"] = authz
            resp = self._send_retrying(method, url, hdrs, body, deadline)
            if resp.status == 401 and not auth_tried and urlsplit(url).netloc == urlsplit(self.base).netloc:
                auth_tried = True
                challenge = resp.header("WWW-Authenticate")
                resp.close()
                self.auth.forget(scopes)
                if challenge:
                    self.auth.set_challenge(challenge)
                    wanted = (self.auth.challenge.get("scope") or "").split() if self.auth.challenge else []
                    scopes = tuple(dict.fromkeys((*scopes, *wanted)))  # what the registry says it needs
                if self.auth.challenge is not None:
                    continue
                break
            if resp.status in _REDIRECTS and method in ("GET", "HEAD") and resp.header("Location") and redirects < 5:
                redirects += 1  # blob storage elsewhere (S3, a CDN): follow, keeping Range
                resp.close()
                url = urljoin(url, resp.header("Location"))
                continue
            break
        if resp.status in tuple(ok):
            return resp
        codes, text = _error_codes(resp)
        resp.close()
        subject = what or f"{method} {urlsplit(url).path}"
        message = f"{self.registry}: {subject}: {resp.status} {text or _STATUS_TEXT.get(resp.status, '')}".rstrip()
        hint = None
        if resp.status in (401, 403):
            hint = f"check your access; run 'pybuild login {self.registry}'"
        raise RegistryError(message, status=resp.status, codes=codes, temporary=resp.status in RETRY_STATUSES,
                            hint=hint)

    def check_login(self) -> None:
        """Verify this client's credentials the way `docker login` does (`/v2/` or a token)."""
        self.ping()
        if self.auth.challenge is None:
            return
        if self.auth.challenge.scheme == "basic":
            self.request("GET", "/v2/", scopes=(), what="login").close()
        else:
            self.auth.header(())

    # -- manifests ------------------------------------------------------------------------

    def get_manifest(self, repository: str, identifier: str,
                     accept: Iterable[str] = MANIFEST_ACCEPT) -> tuple[bytes, str, Digest]:
        """The manifest (or index) bytes, media type and digest; a digest reference is verified."""
        resp = self.request("GET", f"/v2/{repository}/manifests/{identifier}", scopes=[scope(repository, "pull")],
                            headers={"Accept": ", ".join(accept)}, what=f"manifest {repository}:{identifier}"
                            if ":" not in identifier else f"manifest {repository}@{identifier}")
        length = int(resp.header("Content-Length") or 0)
        if length > MANIFEST_MAX:
            resp.close(reuse=False)
            raise RegistryError(f"{self.registry}: manifest {repository}:{identifier} is {length} bytes, over the {MANIFEST_MAX} limit")
        data = resp.read()
        media_type = resp.header("Content-Type").split(";", 1)[0].strip()
        digest = Digest.of(data)
        if identifier.startswith("sha256:") and digest != identifier:
            raise DigestMismatchError(f"{self.registry}: manifest {repository}@{identifier} has digest {digest}")
        return data, media_type, digest

    def head_manifest(self, repository: str, identifier: str,
                      accept: Iterable[str] = MANIFEST_ACCEPT) -> Descriptor | None:
        """The manifest's descriptor without its body, or None when the registry does not have it."""
        resp = self.request("HEAD", f"/v2/{repository}/manifests/{identifier}", scopes=[scope(repository, "pull")],
                            headers={"Accept": ", ".join(accept)}, ok=(200, 404))
        resp.close()
        if resp.status == 404:
            return None
        digest = resp.header("Docker-Content-Digest")
        if not digest:
            return None
        return Descriptor(resp.header("Content-Type").split(";", 1)[0].strip(), Digest(digest),
                          int(resp.header("Content-Length") or 0))

    def put_manifest(self, repository: str, identifier: str, data: bytes, media_type: str) -> Digest:
        """Upload a manifest under a tag or its digest; returns its digest."""
        digest = Digest.of(data)
        resp = self.request("PUT", f"/v2/{repository}/manifests/{identifier}",
                            scopes=[scope(repository, "pull", "push")], headers={"Content-Type": media_type},
                            body=data, ok=(200, 201, 202), what=f"push manifest {repository}:{identifier}")
        resp.close()
        got = resp.header("Docker-Content-Digest")
        if got and got != digest:
            raise RegistryError(f"{self.registry}: stored manifest {repository}:{identifier} as {got}, expected {digest}")
        return digest

    def tags(self, repository: str) -> list[str]:
        resp = self.request("GET", f"/v2/{repository}/tags/list", scopes=[scope(repository, "pull")])
        doc = resp.json()
        return list(doc.get("tags") or []) if isinstance(doc, dict) else []

    # -- blobs ----------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scopes=[scope(repository, "pull")],
                            ok=(200, 404))
        resp.close()
        return resp.status == 200

    def download_blob(self, repository: str, desc: Descriptor, dest: "Path | BlobSink",
                      progress: Progress | None = None) -> None:
        """Stream a blob into `dest` (a file, or a `BlobSink` such as the store's blob writer),
        resuming with `Range` after a broken connection.

        The content is complete and its sha256 matches `desc.digest` when this returns; a body with
        the wrong digest or size is retried from scratch and, after the retry budget, raises
        DigestMismatchError (a file `dest` is removed).
        """
        if isinstance(dest, Path):
            with open(dest, "wb") as out:
                try:
                    self._download(repository, desc, _FileSink(out), progress)
                except DigestMismatchError:
                    out.close()
                    os.unlink(dest)
                    raise
            return
        self._download(repository, desc, dest, progress)

    def _download(self, repository: str, desc: Descriptor, out: "BlobSink", progress: Progress | None) -> None:
        import time

        path = f"/v2/{repository}/blobs/{desc.digest}"
        scopes = [scope(repository, "pull")]
        failures = 0
        done = 0
        allowed = self.options.deadline + desc.size / (1 << 20)  # the deadline, plus 1 s per MiB
        deadline = time.monotonic() + allowed
        while True:
            headers = {"Range": f"bytes={done}-"} if done else {}
            try:
                resp = self.request("GET", path, scopes=scopes, headers=headers, ok=(200, 206),
                                    what=f"blob {desc.digest}", deadline=deadline)
                if resp.status == 200 and done:  # no range support: start over
                    out.restart()
                    if progress:
                        progress(-done)
                    done = 0
                length = resp.header("Content-Length")
                if resp.status == 200 and length.isdigit() and int(length) != desc.size:  # the descriptor lies
                    resp.close(reuse=False)
                    raise DigestMismatchError(f"{self.registry}: blob {repository}@{desc.digest} is {length} bytes, "
                                              f"its descriptor says {desc.size}; nothing was stored")
                try:
                    for chunk in resp.iter_bytes(_READ):
                        if done + len(chunk) > desc.size:
                            raise _BadBody(f"more than the {desc.size} bytes announced")
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"the download passed its {allowed:.0f} s deadline")
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(len(chunk))
                except BaseException:
                    resp.close(reuse=False)  # a half-read body: the connection cannot be reused
                    raise
                if done < desc.size:
                    raise ConnectionResetError(f"body ended after {done} of {desc.size} bytes")
                got = out.digest
                if got != desc.digest:
                    raise _BadBody(f"content hashes to {got}")
                return
            except _BadBody as exc:
                failures += 1
                if failures > self.options.retries:
                    raise DigestMismatchError(f"{self.registry}: blob {repository}@{desc.digest}: {exc}; "
                                              f"giving up after {failures} tries; nothing was stored") from None
                out.restart()
                if progress:
                    progress(-done)
                done = 0
                self.transport.backoff(failures)
            except (OSError, http.client.HTTPException) as exc:  # a broken stream: resume
                if not is_connection_error(exc):
                    raise RegistryError(f"{self.registry}: blob {repository}@{desc.digest}: {exc}") from None
                failures += 1
                if time.monotonic() >= deadline - 0.01:
                    raise RegistryError(f"{self.registry}: blob {repository}@{desc.digest}: not downloaded within "
                                        f"its {allowed:.0f} s deadline ({done} of {desc.size} bytes; {exc})",
                                        temporary=True,
                                        hint="set a longer one with --timeout or PYBUILD_REGISTRY_TIMEOUT") from None
                if failures > self.options.retries:
                    raise RegistryError(f"{self.registry}: blob {repository}@{desc.digest}: {exc} "
                                        f"(after {failures} tries)", temporary=True) from None
                self.transport.backoff(failures)

    def fetch_blob(self, repository: str, desc: Descriptor, limit: int = BLOB_BYTES_MAX) -> bytes:
        """A small blob (a config) in memory, verified like `download_blob`."""
        if desc.size > limit:
            raise RegistryError(f"{self.registry}: blob {repository}@{desc.digest} is {desc.size} bytes, "
                                f"over the {limit} limit")
        sink = _BytesSink()
        self._download(repository, desc, sink, None)
        return sink.getvalue()

    def open_blob(self, repository: str, desc: Descriptor) -> IO[bytes]:
        """A reader streaming a blob from the registry; a body with the wrong digest or size raises
        DigestMismatchError at its end (no resuming: use `download_blob` for that)."""
        resp = self.request("GET", f"/v2/{repository}/blobs/{desc.digest}", scopes=[scope(repository, "pull")],
                            what=f"blob {desc.digest}")
        return _BlobStream(resp, desc, f"{self.registry}: blob {repository}@{desc.digest}")  # type: ignore[return-value]

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount: True when the registry linked the blob without an upload."""
        query = urlencode({"mount": digest, "from": from_repository})
        resp = self.request("POST", f"/v2/{repository}/blobs/uploads/?{query}",
                            scopes=[scope(repository, "pull", "push"), scope(from_repository, "pull")],
                            ok=(201, 202), what=f"mount {digest} from {from_repository}")
        location = resp.header("Location")
        resp.close()
        if resp.status == 201:
            return True
        if location:  # the registry opened a normal upload instead; cancel it
            try:
                self.request("DELETE", self._absolute(location), scopes=[scope(repository, "pull", "push")],
                             ok=(200, 202, 204, 404)).close()
            except RegistryError:
                pass
        return False

    def upload_blob(self, repository: str, desc: Descriptor, source: "Path | Opener",
                    progress: Progress | None = None, chunk_size: int = CHUNK_THRESHOLD) -> None:
        """Upload `source` (a file, or a function opening the blob; it must hash to `desc.digest`):
        one PUT for small blobs, PATCH chunks for large."""
        scopes = [scope(repository, "pull", "push")]
        for attempt in range(self.options.retries + 1):
            try:
                self._upload_once(repository, desc, source, scopes, progress, chunk_size)
                return
            except RegistryError as exc:
                # a broken upload session (after a reset) comes back as 400/404/416: start over;
                # content the registry refuses (DIGEST_INVALID, SIZE_INVALID) would be refused again
                session_lost = exc.status in (400, 404, 416) and not set(exc.codes) & _FINAL_UPLOAD_CODES
                if not (exc.temporary or session_lost) or attempt >= self.options.retries:
                    raise
                self.transport.backoff(attempt + 1)

    def _upload_once(self, repository: str, desc: Descriptor, source: "Path | Opener", scopes: list[str],
                     progress: Progress | None, chunk_size: int) -> None:
        resp = self.request("POST", f"/v2/{repository}/blobs/uploads/", scopes=scopes, ok=(202,),
                            what=f"start upload of {desc.digest}")
        resp.close()
        location = self._absolute(resp.header("Location"))
        if desc.size <= chunk_size:
            resp = self.request("PUT", _with_query(location, digest=desc.digest), scopes=scopes,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(desc.size)},
                                body=lambda: _file_slice(source, 0, desc.size), ok=(201,), what=f"upload {desc.digest}")
            resp.close()
            if progress:
                progress(desc.size)
            return
        offset = 0
        while offset < desc.size:
            length = min(chunk_size, desc.size - offset)
            resp = self.request("PATCH", location, scopes=scopes,
                                headers={"Content-Type": "application/octet-stream", "Content-Length": str(length),
                                         "Content-Range": f"{offset}-{offset + length - 1}"},
                                body=functools.partial(_file_slice, source, offset, length), ok=(202,),
                                what=f"upload chunk of {desc.digest}")
            resp.close()
            location = self._absolute(resp.header("Location") or location)
            offset += length
            if progress:
                progress(length)
        resp = self.request("PUT", _with_query(location, digest=desc.digest), scopes=scopes,
                            headers={"Content-Length": "0"}, body=b"", ok=(201,), what=f"finish upload of {desc.digest}")
        resp.close()

    def _absolute(self, location: str) -> str:
        if not location:
            raise RegistryError(f"{self.registry}: upload answer without a Location header")
        return urljoin(self.base + "/", location)

    def close(self) -> None:
        self.transport.close()


class BlobSink(Protocol):
    """Where a download goes: written in order, hashed as written, restarted from zero on demand."""

    def write(self, data: bytes) -> object: ...
    def restart(self) -> None: ...
    @property
    def digest(self) -> str: ...


class _FileSink:
    """A `BlobSink` writing to an open file."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out, self._hash = out, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)

    def restart(self) -> None:
        self._out.seek(0)
        self._out.truncate()
        self._hash = hashlib.sha256()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _BytesSink(_FileSink):
    """A `BlobSink` in memory."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        super().__init__(self._buf)

    def getvalue(self) -> bytes:
        return self._buf.getvalue()


class _BlobStream:
    """A blob body read as a stream, checked against its descriptor at the end."""

    def __init__(self, resp: Response, desc: Descriptor, label: str) -> None:
        self._resp, self._desc, self._label = resp, desc, label
        self._chunks = resp.iter_bytes(_READ)
        self._buf, self._hash, self._size, self._eof = b"", hashlib.sha256(), 0, False

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = next(self._chunks, b"")
            if not chunk:
                self._eof = True
                self._check()
                break
            self._hash.update(chunk)
            self._size += len(chunk)
            self._buf += chunk
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _check(self) -> None:
        got = "sha256:" + self._hash.hexdigest()
        if self._size != self._desc.size or got != self._desc.digest:
            raise DigestMismatchError(f"{self._label}: the registry sent {self._size} bytes hashing to {got}")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._resp.close(reuse=self._eof)

    def __enter__(self) -> "_BlobStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BadBody(Exception):
    """A blob body that cannot be right (too long, wrong digest)."""


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _file_slice(source: "Path | Opener", offset: int, length: int) -> Iterable[bytes]:
    with (open(source, "rb") if isinstance(source, Path) else source()) as f:
        _skip(f, offset)
        left = length
        while left:
            data = f.read(min(_READ, left))
            if not data:
                raise RegistryError(f"{source if isinstance(source, Path) else 'blob'}: file shrank while uploading")
            left -= len(data)
            yield data


def _skip(f: IO[bytes], offset: int) -> None:
    """Move a fresh reader `offset` bytes on (seeking when it can)."""
    if not offset:
        return
    try:
        if f.seekable():
            f.seek(offset)
            return
    except (AttributeError, OSError):
        pass
    left = offset
    while left and (data := f.read(min(_READ, left))):
        left -= len(data)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_FINAL_UPLOAD_CODES = frozenset({"DIGEST_INVALID", "SIZE_INVALID", "NAME_INVALID", "NAME_UNKNOWN", "DENIED",
                                 "UNAUTHORIZED", "UNSUPPORTED"})
_STATUS_TEXT = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
                405: "method not allowed (is this registry read-only?)", 413: "too large",
                429: "too many requests", 500: "internal server error", 502: "bad gateway",
                503: "service unavailable", 504: "gateway timeout"}
