"""Property-based fuzz (issue 12): CLI arguments, docker-archive and OCI-layout inputs never end in
`pybuild: internal error` (exit 70) or a traceback. Exit codes: 0, 1 (a located error) and 125 (what
docker gives for a command line it refuses, and `docker run` for its own failures); never argparse's 2.

The CLI is called in-process (`builder.cli.main`) so that each example costs milliseconds; the
example counts keep the module under a minute."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder import cli
from tests.conftest import pybuild, requires_root
from tests.security.test_faults import write_tar

pytestmark = requires_root

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _main(argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `pybuild ARGV` run in this process."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape")
    err = io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""))  # an empty stdin, as `pybuild load < /dev/null` (not pytest's)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # --help (0); a usage error would show here as 2
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = stdin
    return code, err.getvalue()


def _check(argv: list[str]) -> None:
    code, err = _main(argv)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    assert code in (0, 1, 125), (argv, code, err)


@pytest.fixture(scope="module")
def fuzz_store(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-store")
    env = {"PYBUILD_ROOT": str(root)}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    pybuild("save", "-o", str(root.parent / "busybox-docker.tar"), "busybox", env=env)
    pybuild("save", "--format", "oci", "-o", str(root.parent / "busybox-oci.tar"), "busybox", env=env)
    return root


@pytest.fixture
def in_store(fuzz_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYBUILD_ROOT", str(fuzz_store))
    monkeypatch.setenv("PYBUILD_REGISTRY_TIMEOUT", "1")  # no name reaches a registry here; if one did, quickly
    return fuzz_store


# --- CLI arguments -------------------------------------------------------------------------------

COMMANDS = ["images", "inspect", "history", "tag", "rmi", "parse", "analyze", "save", "diff", "explain", "cache",
            "ps", "logs", "load", "import", "build", "nosuchcommand", ""]
TOKENS = ["busybox", "busybox:latest", "sha256:", "sha256:" + "0" * 64, "-q", "-o", "--format", "json", "oci",
          "docker", "{{.Id}}", "{{", "-f", "-t", "x:1", "UPPER:1", "a/b/c:tag@sha256:zz", "-", "--no-cache", "/",
          "/dev/null", "/dev/full", "/proc/version", "--platform", "linux/arm64/v9", "-i", "--target", "--build-arg",
          "A=", "--progress=plain", "--output", "type=nope", "type=local,dest=", "--all", "-a", "--help", "-1",
          "999999999999999999999", "\x00x"[1:], "..", "./", "%s", "-e"]
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
argument = st.one_of(st.sampled_from(TOKENS), _text,
                     st.binary(max_size=8).map(lambda b: os.fsdecode(b.replace(b"\0", b""))))


@SETTINGS
@given(command=st.sampled_from(COMMANDS), args=st.lists(argument, max_size=5))
def test_cli_arguments(in_store: Path, command: str, args: list[str]) -> None:
    if command == "build" and not any(a == "--help" for a in args):
        args = [*args, "--no-cache", "-q"]
        if "-" in args or not any(os.path.isdir(a) for a in args):  # no random context: an empty one
            args.append(str(in_store.parent))
    _check([command, *args] if command else args)


# --- docker-archive inputs -----------------------------------------------------------------------

json_value: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]



def _mutate(members: dict[str, bytes], data: st.DataObject) -> dict[str, bytes]:
    """One of: a JSON member replaced by any JSON value, a field of a JSON object changed, a member
    dropped, a member's bytes truncated or replaced."""
    names = sorted(members)
    name = data.draw(st.sampled_from(names))
    how = data.draw(st.sampled_from(["json", "field", "drop", "truncate", "bytes"]))
    out = dict(members)
    if how == "json":
        out[name] = json.dumps(data.draw(json_value)).encode()
    elif how == "field":
        try:
            doc = json.loads(members[name])
        except ValueError:
            doc = None
        target = doc[0] if isinstance(doc, list) and doc and isinstance(doc[0], dict) else doc
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target)))
            target[key] = data.draw(json_value)
            out[name] = json.dumps(doc).encode()
        else:
            out[name] = b""
    elif how == "drop":
        del out[name]
    elif how == "truncate":
        out[name] = members[name][: data.draw(st.integers(0, max(len(members[name]) - 1, 0)))]
    else:
        out[name] = data.draw(st.binary(max_size=64))
    return out


def _rehash(members: dict[str, bytes], name: str) -> None:
    """A changed blob is renamed to its new digest and every descriptor naming it (in index.json,
    manifest.json and the manifests) follows, up to the index: the input then gets past the
    digest checks and reaches the parsers behind them."""
    import hashlib

    if not name.startswith("blobs/sha256/") or name not in members:
        return
    old = "sha256:" + name.rsplit("/", 1)[1]
    new = "sha256:" + hashlib.sha256(members[name]).hexdigest()
    if old == new:
        return
    members["blobs/sha256/" + new[7:]] = members.pop(name)

    def fix(node: Any) -> bool:
        changed = False
        if isinstance(node, dict):
            if node.get("digest") == old:
                node["digest"], node["size"], changed = new, len(members["blobs/sha256/" + new[7:]]), True
            if node.get("Config") == name:
                node["Config"], changed = "blobs/sha256/" + new[7:], True
            return any([fix(v) for v in node.values()]) or changed
        if isinstance(node, list):
            return any([fix(v) for v in node])
        return False

    for other in list(members):
        try:
            doc = json.loads(members[other])
        except ValueError:
            continue
        if fix(doc):
            members[other] = json.dumps(doc).encode()
            _rehash(members, other)


@SETTINGS
@given(data=st.data())
def test_docker_archive_inputs(in_store: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    members = _members(in_store.parent / "busybox-docker.tar")
    before = dict(members)
    members = _mutate(members, data)
    for name in before:
        if name in members and members[name] != before[name] and len(members[name]) < 1 << 16:
            _rehash(members, name)
    archive = write_tar(tmp_path_factory.mktemp("fuzz") / "in.tar", members)
    code, err = _main(["load", "-i", str(archive)])
    assert "internal error" not in err and "Traceback" not in err, err
    assert code in (0, 1), (code, err)


@SETTINGS
@given(data=st.data())
def test_oci_layout_inputs(in_store: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    members = _members(in_store.parent / "busybox-oci.tar")
    members.pop("manifest.json", None)
    before = dict(members)
    members = _mutate(members, data)
    for name in before:  # a changed JSON blob keeps its descriptors right (or the digest check stops it)
        if name in members and members[name] != before[name] and len(members[name]) < 1 << 16:
            _rehash(members, name)  # read as an OCI layout, not through the docker-archive view
    archive = write_tar(tmp_path_factory.mktemp("fuzz") / "in.tar", members)
    code, err = _main(["load", "-i", str(archive)])
    assert "internal error" not in err and "Traceback" not in err, err
    assert code in (0, 1), (code, err)


# --- layer tars (what load, pull and unpack read), GNU sparse members included ----------------------

class _Tars(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:  # hypothesis prints the test's arguments: not megabytes of tar
        return f"<{len(self)} layer tars>"


@pytest.fixture(scope="module")
def layer_tars(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Small tars in every form the decoder reads: ustar with a long name, GNU sparse (with extension
    blocks), PAX sparse 0.0, 0.1 and 1.0."""
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is installed by scripts/install-test-deps")
    d = tmp_path_factory.mktemp("layer-tars")
    with open(d / "sparse", "wb") as f:
        f.truncate(3 << 20)
        for i in range(30):  # more than the 4 map entries a GNU header holds
            f.seek(i * (96 << 10))
            f.write(b"data%d" % i)
    (d / ("long-" * 30)).write_bytes(b"x" * 700)
    out = _Tars()
    for flags in (["--format=gnu"], ["--format=posix", "--sparse-version=0.0"], ["--format=posix", "--sparse-version=0.1"],
                  ["--format=posix"]):
        subprocess.run(["tar", *flags, "--sparse", "-cf", str(d / "t.tar"), "-C", str(d), "sparse", "long-" * 30],
                       check=True)
        out.append((d / "t.tar").read_bytes())
    return out


def _fix_checksums(data: bytearray, headers: list[int]) -> None:
    for off in headers:
        block = data[off:off + 512]
        if len(block) == 512:
            data[off + 148:off + 156] = b"%06o\0 " % (sum(block[:148]) + 256 + sum(block[156:]))


def _headers(data: bytes) -> list[int]:
    """The offsets of the blocks whose checksum is right (the headers, in a tar as made)."""
    found = []
    for off in range(0, len(data) - 511, 512):
        block = data[off:off + 512]
        try:
            stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
        except ValueError:
            continue
        if stored == sum(block[:148]) + 256 + sum(block[156:]):
            found.append(off)
    return found


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_layer_tar_decoding(layer_tars: list[bytes], data: st.DataObject) -> None:
    """Any mutation of a layer tar (header checksums kept right, so mutations reach the fields) decodes
    or is an ImageFormatError, never another exception; no entry reads past what it claims."""
    from builder.errors import ImageFormatError
    from builder.oci.layer.decode import iter_tar

    base = data.draw(st.sampled_from(layer_tars))
    buf = bytearray(base)
    headers = _headers(base)
    for _ in range(data.draw(st.integers(1, 8))):
        if data.draw(st.booleans()) and headers:  # inside a header block, or the sparse map after one
            pos = data.draw(st.sampled_from(headers)) + data.draw(st.integers(0, 1023))
        else:
            pos = data.draw(st.integers(0, len(buf) - 1))
        value = data.draw(st.one_of(st.binary(min_size=1, max_size=12),
                                    st.sampled_from([b"0", b"7", b"S", b"x", b"\0", b"\n", b"99999999999", b"-1",
                                                     b"1\n", b"GNU.sparse.major=1", b"\xff" * 8])))
        buf[pos:pos + len(value)] = value[:max(0, len(buf) - pos)]
    _fix_checksums(buf, headers)
    if data.draw(st.booleans()):
        buf = buf[:data.draw(st.integers(0, len(buf)))]
    try:
        for h, read in iter_tar(io.BytesIO(bytes(buf))):
            got = 0
            while got < 64 << 20 and (chunk := read(1 << 20)):  # (a mutated size may claim terabytes of holes)
                got += len(chunk)
            assert got == h.size or got >= 64 << 20, (h, got)
    except ImageFormatError:
        pass
