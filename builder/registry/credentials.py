"""Registry credentials where Docker keeps them: `$DOCKER_CONFIG/config.json` (default `~/.docker`).

    {"auths": {"HOST": {"auth": base64("user:password")} | {"identitytoken": "..."}},
     "credsStore": "NAME",                  # docker-credential-NAME for every registry
     "credHelpers": {"HOST": "NAME"}}       # docker-credential-NAME for one registry

Lookup goes credHelpers, then credsStore, then auths, then the `auths` of containers-auth.json
(`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`),
where `podman login` writes. Helpers speak Docker's credential-helper
protocol: `get`/`store`/`erase` with the server on stdin and JSON on stdout. `login` writes the file
atomically with mode 0600 (its directory 0700); nothing here ever logs a secret.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import RegistryError
from builder.util.atomic import write_atomic

__all__ = ["Credentials", "config_path", "lookup", "store", "erase", "config_key", "use_in_process"]

_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an identity (refresh) token when `username` is `<token>`."""

    username: str
    secret: str

    @property
    def identity_token(self) -> str | None:
        return self.secret if self.username == "<token>" else None

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(username={self.username!r}, secret=***)"


def config_path() -> Path:
    """`$DOCKER_CONFIG/config.json`, or `~/.docker/config.json`."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base, "config.json")


def config_key(registry: str) -> str:
    """The key Docker uses in `auths` for a registry (Docker Hub keeps its historical URL)."""
    return _DOCKER_HUB_KEY if registry in _DOCKER_HUB_HOSTS else registry


def _normalise(key: str) -> str:
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB_HOSTS else host


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: cannot read credentials: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object")
    return data


def _helper(name: str, action: str, payload: str, registry: str) -> str:
    exe = f"docker-credential-{name}"
    try:
        proc = subprocess.run([exe, action], input=payload, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RegistryError(f"credential helper {exe} not found for {registry}",
                            hint=f"install {exe} or remove it from {config_path()}") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        if action == "get" and "credentials not found" in out.lower():
            return ""
        raise RegistryError(f"credential helper {exe} {action} failed for {registry}: {out[:200]}")
    return proc.stdout


def _helper_for(conf: dict[str, Any], registry: str) -> str | None:
    helpers = conf.get("credHelpers") or {}
    for key, name in helpers.items():
        if _normalise(key) == registry:
            return str(name)
    return conf.get("credsStore") or None


_IN_PROCESS: dict[str, Credentials] = {}


def use_in_process(registry: str, creds: Credentials) -> None:
    """Credentials a client handed a long-running process (`pybuild serve`: X-Registry-Auth and
    X-Registry-Config): used before any file for `registry`, in this process only, never written."""
    _IN_PROCESS[_normalise(registry)] = creds


def lookup(registry: str) -> Credentials | None:
    """The stored credentials for `registry` (host[:port]), or None for anonymous access."""
    registry = _normalise(registry)
    if registry in _IN_PROCESS:
        return _IN_PROCESS[registry]
    conf = _load(config_path())
    helper = _helper_for(conf, registry)
    if helper:
        out = _helper(helper, "get", config_key(registry) if registry == "docker.io" else registry, registry)
        if out.strip():
            try:
                got = json.loads(out)
                return Credentials(str(got["Username"]), str(got["Secret"]))
            except (ValueError, KeyError, TypeError):
                raise RegistryError(f"credential helper docker-credential-{helper} gave malformed output for {registry}") from None
    found = _from_auths(conf, registry, config_path())
    if found is None:  # what `podman login` / `skopeo login` wrote
        for path in _containers_auth_files():
            found = _from_auths(_load(path), registry, path)
            if found is not None:
                break
    return found


def _containers_auth_files() -> list[Path]:
    """containers-auth.json(5): $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers, ~/.config/containers."""
    paths = [os.environ.get("REGISTRY_AUTH_FILE", "")]
    if os.environ.get("XDG_RUNTIME_DIR"):
        paths.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    paths.append(os.path.join(os.path.expanduser("~"), ".config", "containers", "auth.json"))
    return [Path(p) for p in paths if p]


def _from_auths(conf: dict[str, Any], registry: str, path: Path) -> Credentials | None:
    for key, entry in (conf.get("auths") or {}).items():
        if _normalise(key) != registry or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials("<token>", str(entry["identitytoken"]))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryError(f"{path}: the auth entry for {key} is not base64 of user:password") from None
            return Credentials(user, password)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
    return None


def _write(path: Path, conf: dict[str, Any]) -> None:
    """Replace the config atomically (0600); a symlinked config.json (dotfiles) is written at its
    target, as the docker CLI does, so the link survives."""
    Path(os.path.realpath(path)).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(conf, indent="\t") + "\n").encode(), mode=0o600)


def store(registry: str, creds: Credentials) -> str:
    """Save credentials (through a helper when one is configured); returns where they went."""
    registry = _normalise(registry)
    path = config_path()
    conf = _load(path)
    helper = _helper_for(conf, registry)
    if helper:
        payload = json.dumps({"ServerURL": config_key(registry) if registry == "docker.io" else registry,
                              "Username": creds.username, "Secret": creds.secret})
        _helper(helper, "store", payload, registry)
        return f"docker-credential-{helper}"
    auths = conf.setdefault("auths", {})
    for key in [k for k in auths if _normalise(k) == registry]:
        del auths[key]
    token = base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
    auths[config_key(registry)] = {"auth": token}
    _write(path, conf)
    return str(path)


def erase(registry: str) -> bool:
    """Forget the credentials of `registry`; False when there were none."""
    registry = _normalise(registry)
    path = config_path()
    conf = _load(path)
    helper = _helper_for(conf, registry)
    found = False
    if helper:
        found = lookup(registry) is not None
        if found:
            _helper(helper, "erase", config_key(registry) if registry == "docker.io" else registry, registry)
    auths = conf.get("auths") or {}
    keys = [k for k in auths if _normalise(k) == registry]
    for key in keys:
        del auths[key]
    if keys:
        _write(path, conf)
    return found or bool(keys)
