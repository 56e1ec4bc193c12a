"""Credentials in Docker's config.json, credential helpers, and WWW-Authenticate parsing."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.registry import credentials
from builder.registry.auth import Challenge, parse_challenge
from builder.registry.credentials import Credentials


def _write_config(d: Path, conf: dict) -> None:
    (d / "config.json").write_text(json.dumps(conf))


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auths_lookup_normalises_keys(docker_config: Path) -> None:
    _write_config(docker_config, {"auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hub", "pw1")},
        "http://127.0.0.1:5000/v2/": {"auth": _auth("local", "pw:with:colons")},
        "quay.io": {"identitytoken": "refresh-me"},
    }})
    assert credentials.lookup("docker.io") == Credentials("hub", "pw1")
    assert credentials.lookup("127.0.0.1:5000") == Credentials("local", "pw:with:colons")
    assert credentials.lookup("quay.io").identity_token == "refresh-me"
    assert credentials.lookup("127.0.0.1:5001") is None
    assert "pw1" not in repr(credentials.lookup("docker.io"))


def test_podman_auth_file_is_a_fallback(docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": _auth("pod", "man")},
                                          "both.io": {"auth": _auth("podman", "x")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    _write_config(docker_config, {"auths": {"both.io": {"auth": _auth("docker", "y")}}})
    assert credentials.lookup("127.0.0.1:5000") == Credentials("pod", "man")
    assert credentials.lookup("both.io") == Credentials("docker", "y")  # Docker's file comes first
    assert credentials.lookup("none.io") is None


def test_store_is_0600_atomic_and_keeps_other_keys(docker_config: Path) -> None:
    _write_config(docker_config, {"auths": {"other.io": {"auth": _auth("o", "p")}}, "psFormat": "table"})
    where = credentials.store("127.0.0.1:5000", Credentials("alice", "s3cret"))
    path = docker_config / "config.json"
    assert where == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    conf = json.loads(path.read_text())
    assert conf["psFormat"] == "table" and "other.io" in conf["auths"]
    assert base64.b64decode(conf["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:s3cret"
    assert credentials.erase("127.0.0.1:5000") is True
    assert credentials.erase("127.0.0.1:5000") is False
    assert credentials.lookup("127.0.0.1:5000") is None
    assert [p.name for p in docker_config.iterdir()] == ["config.json"]  # no temporary files left


def test_store_creates_private_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "new" / "dir"))
    credentials.store("docker.io", Credentials("u", "p"))
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "dir").st_mode) == 0o700
    conf = json.loads((tmp_path / "new" / "dir" / "config.json").read_text())
    assert list(conf["auths"]) == ["https://index.docker.io/v1/"]


def _helper(bin_dir: Path, name: str) -> Path:
    """A real docker-credential-NAME speaking the helper protocol, backed by a JSON file."""
    db = bin_dir / f"{name}.json"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"""#!{sys.executable}
import json, sys
db = {str(db)!r}
try:
    data = json.load(open(db))
except FileNotFoundError:
    data = {{}}
action, payload = sys.argv[1], sys.stdin.read()
if action == "get":
    if payload.strip() not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    u, s = data[payload.strip()]
    print(json.dumps({{"ServerURL": payload.strip(), "Username": u, "Secret": s}}))
elif action == "store":
    d = json.loads(payload); data[d["ServerURL"]] = [d["Username"], d["Secret"]]
    json.dump(data, open(db, "w"))
elif action == "erase":
    data.pop(payload.strip(), None); json.dump(data, open(db, "w"))
""")
    script.chmod(0o755)
    return db


def test_creds_store_and_cred_helpers(docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store_db = _helper(bin_dir, "teststore")
    one_db = _helper(bin_dir, "onehost")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    _write_config(docker_config, {"credsStore": "teststore", "credHelpers": {"reg.example:5000": "onehost"}})
    assert credentials.store("127.0.0.1:5000", Credentials("alice", "pw")) == "docker-credential-teststore"
    assert credentials.store("reg.example:5000", Credentials("bob", "pw2")) == "docker-credential-onehost"
    assert json.loads(store_db.read_text()) == {"127.0.0.1:5000": ["alice", "pw"]}
    assert json.loads(one_db.read_text()) == {"reg.example:5000": ["bob", "pw2"]}
    assert credentials.lookup("127.0.0.1:5000") == Credentials("alice", "pw")
    assert credentials.lookup("reg.example:5000") == Credentials("bob", "pw2")
    assert credentials.lookup("elsewhere.io") is None
    assert "auths" not in json.loads((docker_config / "config.json").read_text())  # secrets stayed in helpers
    assert credentials.erase("reg.example:5000") is True
    assert credentials.lookup("reg.example:5000") is None


def test_missing_helper_is_a_clear_error(docker_config: Path) -> None:
    _write_config(docker_config, {"credsStore": "does-not-exist-xyz"})
    with pytest.raises(RegistryError, match="docker-credential-does-not-exist-xyz not found"):
        credentials.lookup("127.0.0.1:5000")


def test_malformed_config(docker_config: Path) -> None:
    (docker_config / "config.json").write_text("{not json")
    with pytest.raises(RegistryError, match="cannot read credentials"):
        credentials.lookup("x.io")
    _write_config(docker_config, {"auths": {"x.io": {"auth": "!!!notbase64"}}})
    with pytest.raises(RegistryError, match="not base64"):
        credentials.lookup("x.io")


@pytest.mark.parametrize("header,expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"',
     Challenge("bearer", (("realm", "https://auth.docker.io/token"), ("service", "registry.docker.io"),
                          ("scope", "repository:a/b:pull,push")))),
    ('Basic realm="Registry Realm"', Challenge("basic", (("realm", "Registry Realm"),))),
    ("basic realm=plain", Challenge("basic", (("realm", "plain"),))),
    ('Bearer realm="r", error="insufficient_scope"', Challenge("bearer", (("realm", "r"), ("error", "insufficient_scope")))),
    ('Bearer realm="a\\"b"', Challenge("bearer", (("realm", 'a"b'),))),
    ("", None),
])
def test_parse_challenge(header: str, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize("module", ["builder.oci.reference", "builder.registry.transport", "builder.registry.auth",
                                    "builder.registry.credentials", "builder.registry.client", "builder.transfer",
                                    "builder.cache.export", "builder.build.pin"])
def test_all_lists_the_public_names(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    public = {n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", None) == module
              and callable(v)}
    assert all(hasattr(mod, n) for n in mod.__all__)
    assert public <= set(mod.__all__), public - set(mod.__all__)


def test_store_writes_through_a_symlinked_config(docker_config: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "config.json").write_text('{"psFormat": "table"}\n')
    (docker_config / "config.json").unlink(missing_ok=True)
    (docker_config / "config.json").symlink_to(dotfiles / "config.json")
    credentials.store("127.0.0.1:5000", Credentials("alice", "s3cret"))
    assert (docker_config / "config.json").is_symlink()  # the user's link is kept
    conf = json.loads((dotfiles / "config.json").read_text())
    assert conf["psFormat"] == "table" and "127.0.0.1:5000" in conf["auths"]
    assert stat.S_IMODE(os.stat(dotfiles / "config.json").st_mode) == 0o600
    assert credentials.lookup("127.0.0.1:5000") == Credentials("alice", "s3cret")
