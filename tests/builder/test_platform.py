"""builder/oci/platform.py: containerd's platforms.Parse and Normalize, matching, and index selection."""

from __future__ import annotations

import pytest

from builder.oci import platform as platforms
from builder.oci.model import OCI_MANIFEST, Descriptor, Digest, Index, Platform
from builder.oci.platform import PlatformError

HOST = platforms.host()


@pytest.mark.parametrize("text,parsed,normalized", [
    ("linux/amd64", "linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3", "linux/amd64/v3"),
    ("linux/arm64", "linux/arm64", "linux/arm64"),
    ("linux/aarch64", "linux/arm64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/8", "linux/arm64/v8", "linux/arm64"),
    ("linux/arm", "linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6", "linux/arm/v6"),
    ("linux/armhf", "linux/arm", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6", "linux/arm/v6"),
    ("linux/i386", "linux/386", "linux/386"),
    ("Linux/AMD64", "linux/amd64", "linux/amd64"),
    ("macos/arm64", "darwin/arm64", "darwin/arm64"),
    ("windows/amd64", "windows/amd64", "windows/amd64"),
    ("arm64", f"{HOST.os}/arm64", f"{HOST.os}/arm64"),
    ("aarch64", f"{HOST.os}/arm64", f"{HOST.os}/arm64"),
    ("linux", str(HOST), str(HOST)),
    ("plan9/whatever", "plan9/whatever", "plan9/whatever"),
])
def test_parse_and_normalize_as_containerd(text: str, parsed: str, normalized: str) -> None:
    p = platforms.parse(text)
    assert str(p) == parsed
    assert str(platforms.normalize(p)) == normalized == platforms.format_platform(p)


@pytest.mark.parametrize("text", ["bogus", "linux/", "/amd64", "linux/amd64/v8/x", "linux/amd 64", "linux/*",
                                  "linux//amd64"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(PlatformError, match="invalid platform"):
        platforms.parse(text)


def test_empty_is_the_host() -> None:
    assert platforms.parse(None) == platforms.parse("") == HOST
    assert HOST.os == "linux" and HOST == platforms.normalize(HOST)


@pytest.mark.parametrize("have,want,ok", [
    (("linux", "arm64", "v8"), "linux/arm64", True),
    (("linux", "arm64", None), "linux/arm64/v8", True),
    (("linux", "aarch64", None), "linux/arm64", True),
    (("linux", "arm", None), "linux/arm/v7", True),
    (("linux", "arm", None), "linux/arm/v6", False),
    (("linux", "arm", "v6"), "linux/arm/v7", False),
    (("linux", "arm", "v6"), "linux/arm", True),
    (("linux", "amd64", None), "linux/arm64", False),
    (("windows", "amd64", None), "linux/amd64", False),
    (("linux", "amd64", "v3"), "linux/amd64", True),
])
def test_matches(have: tuple[str, str, str | None], want: str, ok: bool) -> None:
    assert platforms.matches(Platform(*have), platforms.parse(want)) is ok


def _index(*plats: tuple[str, str, str | None]) -> Index:
    return Index(tuple(Descriptor(OCI_MANIFEST, Digest("sha256:" + f"{i:064x}"), 1, platform=Platform(*p))
                       for i, p in enumerate(plats)))


@pytest.mark.parametrize("entries,want,chosen", [
    ([("linux", "amd64", None), ("linux", "arm64", "v8")], "linux/arm64", 1),
    ([("linux", "amd64", None), ("linux", "arm64", "v8")], "linux/arm64/v8", 1),
    ([("linux", "arm", "v6"), ("linux", "arm", "v7")], "linux/arm/v7", 1),
    ([("linux", "arm", "v6"), ("linux", "arm", "v7")], "linux/arm", 1),
    ([("linux", "arm", "v7"), ("linux", "arm", "v6")], "linux/arm/v6", 1),
    ([("linux", "arm64", None), ("linux", "arm64", "v8")], "linux/arm64/v8", 0),
])
def test_select_prefers_the_exact_variant(entries: list[tuple[str, str, str | None]], want: str, chosen: int) -> None:
    index = _index(*entries)
    assert platforms.select(index, platforms.parse(want)) == index.manifests[chosen]


def test_select_names_what_the_index_has() -> None:
    with pytest.raises(PlatformError, match=r"no image for platform linux/s390x .*linux/amd64, linux/arm64/v8"):
        platforms.select(_index(("linux", "amd64", None), ("linux", "arm64", "v8")), platforms.parse("linux/s390x"))
