"""Reference parsing, table-driven against Docker's documented normalisation rules."""

from __future__ import annotations

import pytest

from builder.errors import InvalidReferenceError
from builder.oci import reference
from builder.oci.reference import Reference, parse_reference

D = "sha256:" + "a" * 64

# input | registry | repository | tag | digest | familiar
VALID = [
    ("tomcat", "docker.io", "library/tomcat", None, None, "tomcat"),
    ("tomcat:alpine", "docker.io", "library/tomcat", "alpine", None, "tomcat:alpine"),
    ("library/tomcat:9", "docker.io", "library/tomcat", "9", None, "tomcat:9"),
    ("docker.io/tomcat", "docker.io", "library/tomcat", None, None, "tomcat"),
    ("index.docker.io/tomcat:1", "docker.io", "library/tomcat", "1", None, "tomcat:1"),
    ("docker.io/library/tomcat", "docker.io", "library/tomcat", None, None, "tomcat"),
    ("me/app", "docker.io", "me/app", None, None, "me/app"),
    ("me/team/app:v1", "docker.io", "me/team/app", "v1", None, "me/team/app:v1"),
    ("localhost/app", "localhost", "app", None, None, "localhost/app"),
    ("localhost:5000/app:t", "localhost:5000", "app", "t", None, "localhost:5000/app:t"),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", None, None, "127.0.0.1:5000/a/b"),
    ("[::1]:5000/app", "[::1]:5000", "app", None, None, "[::1]:5000/app"),
    ("quay.io/org/app", "quay.io", "org/app", None, None, "quay.io/org/app"),
    ("Registry/app", "Registry", "app", None, None, "Registry/app"),  # upper case makes a host
    ("foo:5000", "docker.io", "library/foo", "5000", None, "foo:5000"),  # a tag, not a port
    (f"app@{D}", "docker.io", "library/app", None, D, f"app@{D}"),
    (f"app:1.0@{D}", "docker.io", "library/app", "1.0", D, f"app:1.0@{D}"),
    (f"h.io:443/x/y:z@{D}", "h.io:443", "x/y", "z", D, f"h.io:443/x/y:z@{D}"),
    ("a.b-c/d__e---f.g_h", "a.b-c", "d__e---f.g_h", None, None, "a.b-c/d__e---f.g_h"),
    ("x/a__b/c---d", "docker.io", "x/a__b/c---d", None, None, "x/a__b/c---d"),
    ("app:_Tag.-1", "docker.io", "library/app", "_Tag.-1", None, "app:_Tag.-1"),
    ("app:" + "t" * 128, "docker.io", "library/app", "t" * 128, None, "app:" + "t" * 128),
    ("sha256:x", "docker.io", "library/sha256", "x", None, "sha256:x"),
]

# input | fragment of the message
INVALID = [
    ("", "at least one component"),
    ("0" * 64, "64-byte hexadecimal"),
    ("Tomcat", "must be lowercase"),
    ("me/App:1", "must be lowercase"),
    ("localhost:5000/App", "must be lowercase"),
    ("app:", "invalid reference format"),
    ("app:-x", "invalid reference format"),
    ("app:.x", "invalid reference format"),
    ("app:" + "t" * 129, "invalid reference format"),
    ("app:a:b", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("/app", "invalid reference format"),
    ("app/", "invalid reference format"),
    ("-app", "invalid reference format"),
    ("app-", "invalid reference format"),
    ("a_._b", "invalid reference format"),
    ("a___b", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("app@sha256:abc", "invalid reference format"),
    ("app@sha256:" + "A" * 64, "invalid checksum digest"),
    ("app@sha256:" + "a" * 63 + "aa", "invalid checksum digest"),
    ("app@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("app@", "invalid reference format"),
    ("h_x.io/app", "invalid reference format"),
    ("a.b-c__d/e", "invalid reference format"),
    ("-h.io/app", "invalid reference format"),
    ("h.io:port/app", "invalid reference format"),
    ("x/" + "a" * 254, "more than 255"),
    ("caf\u00e9", "invalid reference format"),
]


@pytest.mark.parametrize("text,registry,repository,tag,digest,familiar", VALID)
def test_valid(text: str, registry: str, repository: str, tag: str | None, digest: str | None, familiar: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.familiar() == familiar
    assert parse_reference(str(ref)) == ref  # the canonical form parses back to itself
    assert parse_reference(ref.familiar()) == ref


@pytest.mark.parametrize("text,fragment", INVALID)
def test_invalid(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as exc:
        parse_reference(text)
    assert fragment in str(exc.value)


def test_defaults_and_derived() -> None:
    ref = parse_reference("tomcat")
    assert str(ref) == "docker.io/library/tomcat"
    assert ref.identifier == "latest" and ref.with_default_tag().tag == "latest"
    assert ref.api_host == "registry-1.docker.io"
    pinned = parse_reference("tomcat:9").with_digest(D)
    assert pinned.identifier == D and str(pinned) == f"docker.io/library/tomcat:9@{D}"
    assert pinned.with_default_tag() is pinned
    assert parse_reference("localhost:5000/a").api_host == "localhost:5000"
    assert parse_reference(f"a@{D}").with_tag("x") == Reference("docker.io", "library/a", "x", None)
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        ref.with_tag("-bad")


def test_hints_for_common_mistakes() -> None:
    with pytest.raises(InvalidReferenceError) as exc:
        parse_reference("app@deadbeef")
    assert exc.value.hint and "sha256" in exc.value.hint
    with pytest.raises(InvalidReferenceError) as exc:
        parse_reference("Tomcat:9")
    assert exc.value.hint == "use 'tomcat:9'"
    for short in ("127.0.0.1:5000/app@sha256:1234", "app:1@sha256:zz"):  # a short or non-hex digest
        with pytest.raises(InvalidReferenceError) as exc:
            parse_reference(short)
        assert exc.value.hint == "a digest is written name@sha256:<64 hex digits>", short
    with pytest.raises(InvalidReferenceError) as exc:
        parse_reference("http://127.0.0.1:5000/app")
    assert exc.value.hint and "no URL scheme" in exc.value.hint


def test_exports() -> None:
    public = {n for n, v in vars(reference).items() if not n.startswith("_") and getattr(v, "__module__", None) == reference.__name__}
    assert public <= set(reference.__all__) and all(hasattr(reference, n) for n in reference.__all__)


# Docker accepts a first component that looks like a host ('.' or ':') but is not a valid one as
# part of the path, leaving a reference with no registry that cannot be pulled; we refuse it.
DOCKER_DEVIATIONS = {"h_x.io/app", "a.b-c__d/e"}


def _docker_accepts(texts: list[str]) -> list[bool]:
    """Docker's own parser as the oracle: `docker pull` parses the reference before it needs a daemon."""
    import os
    import shlex
    import subprocess

    script = "\n".join(f"docker pull {shlex.quote(t)} >/dev/null 2>$E; grep -q 'Cannot connect' $E && echo y || echo n"
                       for t in texts)
    out = subprocess.run(["bash", "-c", "E=$(mktemp)\n" + script + "\nrm -f $E"], capture_output=True, text=True,
                         env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}, timeout=300).stdout.split()
    assert len(out) == len(texts)
    return [o == "y" for o in out]


@pytest.mark.skipif(__import__("shutil").which("docker") is None, reason="the docker CLI is the oracle")
def test_same_acceptance_as_docker_cli() -> None:
    import random

    if not all(_docker_accepts(["[::1]:5000/app", "Registry/app"])):
        pytest.skip("this docker CLI predates the current reference rules (IPv6 hosts, upper-case hosts): "
                    "Debian's 20.10 does; Docker 25+ is the oracle")

    rng = random.Random(7)
    pieces = ["a", "b1", "x", "A", "Z9", ".", "_", "__", "-", "--", ":", "/", "@", "sha256:", "a" * 64, "localhost",
              "5000", "io", "[::1]", "0" * 64, "ab" * 32, "Ab" * 32]
    texts = sorted({t for t, *_ in VALID} | {t for t, _ in INVALID if t}
                   | {"".join(rng.choice(pieces) for _ in range(rng.randint(1, 7))) for _ in range(150)})
    mismatches = []
    for text, docker_ok in zip(texts, _docker_accepts(texts)):
        try:
            parse_reference(text)
            ours = True
        except InvalidReferenceError:
            ours = False
        if ours != docker_ok and text not in DOCKER_DEVIATIONS:
            mismatches.append((text, docker_ok))
    assert not mismatches
    assert sum(_docker_accepts(sorted(DOCKER_DEVIATIONS))) == len(DOCKER_DEVIATIONS)  # still Docker's behaviour
