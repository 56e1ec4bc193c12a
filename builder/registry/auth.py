"""Registry authentication: the `WWW-Authenticate` challenge, Basic auth and the Bearer token flow.

A registry answers `401` with `WWW-Authenticate: Bearer realm="...",service="...",scope="..."`
(Docker Hub, most cloud registries) or `Basic realm="..."` (htpasswd). For Bearer we ask the
realm for a token for the scopes a request needs (`repository:NAME:pull,push`), with Basic
credentials when we have some, or by OAuth2 `refresh_token` when the credentials are an identity
token; tokens are cached per set of scopes until shortly before they expire.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import urlencode

from builder.errors import RegistryError
from builder.registry.credentials import Credentials

__all__ = ["Challenge", "Authenticator", "parse_challenge", "scope"]

_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_EXPIRY_MARGIN = 10.0


def scope(repository: str, *actions: str) -> str:
    """A token scope: `repository:library/tomcat:pull,push`."""
    return f"repository:{repository}:{','.join(actions)}"


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: the scheme (`basic`/`bearer`) and its parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        return dict(self.params).get(key)


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="r",service="s"` -> Challenge("bearer", ...); None for an empty header."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = tuple((m.group(1).lower(), m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3))
                   for m in _PARAM_RE.finditer(rest))
    return Challenge(scheme.lower(), params)


Fetch = Callable[[str, str, dict[str, str], bytes | None], tuple[int, object]]


class Authenticator:
    """Authorization headers for one registry; thread-safe, with a token cache per scope set.

    `fetch(method, url, headers, body) -> (status, json)` performs token requests (the registry
    client passes its own retrying transport), and `credentials()` is asked once, lazily.
    """

    def __init__(self, registry: str, fetch: Fetch, credentials: Callable[[], Credentials | None]) -> None:
        self.registry = registry
        self.challenge: Challenge | None = None
        self._fetch, self._creds_fn = fetch, credentials
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            self._creds, self._creds_loaded = self._creds_fn(), True
        return self._creds

    def set_challenge(self, header: str) -> None:
        """Remember how the registry wants us to authenticate (from a 401 answer)."""
        ch = parse_challenge(header)
        if ch is None or ch.scheme not in ("basic", "bearer"):
            raise RegistryError(f"{self.registry}: unsupported authentication challenge {header!r}", status=401)
        self.challenge = ch

    def forget(self, scopes: Iterable[str]) -> None:
        """Drop a cached token the registry refused."""
        with self._lock:
            self._tokens.pop(tuple(sorted(scopes)), None)

    def header(self, scopes: Iterable[str]) -> str | None:
        """The Authorization header value for a request needing `scopes`, or None (anonymous)."""
        ch = self.challenge
        if ch is None:
            return None
        creds = self.credentials()
        if ch.scheme == "basic":
            if creds is None:
                raise RegistryError(f"{self.registry}: authentication required", status=401,
                                    hint=f"run 'pybuild login {self.registry}'")
            return "Basic " + base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
        return "Bearer " + self._token(ch, tuple(sorted(set(scopes))), creds)

    def _token(self, ch: Challenge, scopes: tuple[str, ...], creds: Credentials | None) -> str:
        with self._lock:
            hit = self._tokens.get(scopes)
            if hit and hit[1] > time.monotonic():
                return hit[0]
        realm = ch.get("realm")
        if not realm:
            raise RegistryError(f"{self.registry}: Bearer challenge without a realm", status=401)
        service = ch.get("service") or ""
        headers: dict[str, str] = {}
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "service": service,
                    "scope": " ".join(scopes), "client_id": "pybuild"}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            status, doc = self._fetch("POST", realm, headers, urlencode(form).encode())
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            if creds:
                query.append(("account", creds.username))
                headers["Authorization"] = "Basic " + base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
            sep = "&" if "?" in realm else "?"
            status, doc = self._fetch("GET", realm + (sep + urlencode(query) if query else ""), headers, None)
        if status in (401, 403):
            raise RegistryError(f"{self.registry}: the token server refused "
                                f"{'the stored credentials' if creds else 'anonymous access'} ({status})",
                                status=status, hint=f"run 'pybuild login {self.registry}'")
        if status != 200 or not isinstance(doc, dict):
            raise RegistryError(f"{self.registry}: token server {realm} answered {status}", status=status,
                                temporary=status >= 500)
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.registry}: token server {realm} returned no token", status=status)
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, (int, float)) and expires > 0 else 60.0
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + max(lifetime - _EXPIRY_MARGIN, lifetime / 2))
        return token
