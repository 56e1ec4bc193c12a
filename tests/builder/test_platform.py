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


def test_parse_list_normalises_dedupes_and_refuses_half_lists() -> None:
    assert platforms.parse_list("linux/amd64,linux/aarch64, linux/arm64/v8,linux/armhf") == [
        "linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert platforms.parse_list("") == [] and platforms.parse_list(None) == []
    for bad in ("linux/amd64,", ",linux/amd64", "linux/amd64,,linux/arm64", "amd64,linux/", "linux/amd64,bogus"):
        with pytest.raises(PlatformError, match="invalid platform|an empty platform"):
            platforms.parse_list(bad)


def test_platform_args_are_buildkits_normalised() -> None:
    args = platforms.platform_args("linux/aarch64", "linux/x86_64")
    assert args == {"TARGETPLATFORM": "linux/arm64", "TARGETOS": "linux", "TARGETARCH": "arm64", "TARGETVARIANT": "",
                    "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": ""}
    arm = platforms.platform_args("linux/arm", "linux/amd64")
    assert (arm["TARGETPLATFORM"], arm["TARGETARCH"], arm["TARGETVARIANT"]) == ("linux/arm/v7", "arm", "v7")


def test_emulation_check_reads_binfmt_misc(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from builder.build import emulation

    monkeypatch.setenv("PYBUILD_BINFMT_DIR", str(tmp_path))
    native = "linux/" + HOST.architecture + (f"/{HOST.variant}" if HOST.variant else "")
    emulation.check([native])  # the host's own platform needs nothing
    foreign = "linux/arm64" if HOST.architecture != "arm64" else "linux/amd64"
    entry = "qemu-aarch64" if HOST.architecture != "arm64" else "qemu-x86_64"
    with pytest.raises(emulation.EmulationError, match=f"cannot run {foreign} programs.*binfmt_misc is not mounted"):
        emulation.check([foreign])
    (tmp_path / "register").touch()
    (tmp_path / entry).write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\nflags: PO\n")
    with pytest.raises(emulation.EmulationError, match="with the F flag") as err:
        emulation.check([foreign])
    assert err.value.hint is not None and "qemu-user-static" in err.value.hint
    (tmp_path / entry).write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/x\nflags: POF\n")
    with pytest.raises(emulation.EmulationError):
        emulation.check([foreign])
    (tmp_path / entry).write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\nflags: POF\n")
    emulation.check([foreign])
    with pytest.raises(emulation.EmulationError, match="windows/amd64 programs"):
        emulation.check(["windows/amd64"])
