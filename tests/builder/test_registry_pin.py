"""`pybuild pin`: FROM lines get the registry's digest; everything else in the file stays byte for byte."""

from __future__ import annotations

import uuid
from pathlib import Path

from builder.oci.reference import parse_reference
from builder.transfer import push
from builder.registry.transport import RegistryOptions
from builder.build.pin import pin_dockerfile
from builder.store import Store
from tests.builder.registry_server import Registry, needs_registry
from tests.conftest import pybuild

D = "sha256:" + "ab" * 32

TEXT = """\
# syntax=docker/dockerfile:1
# a comment mentioning FROM alpine:3
ARG BASE=busybox
FROM --platform=linux/amd64 \\
    golang:1.22 AS build
RUN echo build
FROM build AS test
FROM $BASE
FROM scratch
from  alpine:3.19   as   final
FROM me/app@sha256:""" + "cd" * 32 + """
COPY --from=build /x /x
"""


def test_pin_keeps_formatting_and_skips_what_cannot_be_pinned() -> None:
    asked: list[str] = []

    def resolve(ref):  # type: ignore[no-untyped-def]
        asked.append(str(ref))
        return D

    new, pins = pin_dockerfile(TEXT, resolve)
    assert asked == ["docker.io/library/golang:1.22", "docker.io/library/alpine:3.19"]
    assert [(p.line, p.old) for p in pins] == [(5, "golang:1.22"), (10, "alpine:3.19")]
    expected = TEXT.replace("    golang:1.22 AS build", f"    golang:1.22@{D} AS build") \
                   .replace("from  alpine:3.19   as", f"from  alpine:3.19@{D}   as")
    assert new == expected
    assert pin_dockerfile(new, resolve)[1] == []  # idempotent


@needs_registry
def test_pin_cli_against_registry(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/pin/{uuid.uuid4().hex[:8]}:1"
    pushed = push(Store.open(busybox_store), "busybox:latest", parse_reference(name),
                  options=RegistryOptions(backoff=0.01))
    df = tmp_path / "Dockerfile"
    df.write_text(f"# base\nFROM {name} AS base\nRUN true\n")
    assert pybuild("pin", "--check", str(df), check=False).returncode == 1
    out = pybuild("pin", str(df)).stdout
    assert df.read_text() == f"# base\nFROM {name}@{pushed.digest} AS base\nRUN true\n"
    assert f"{df}:2: {name}@{pushed.digest}" in out
    assert pybuild("pin", "--check", str(df)).returncode == 0
    df.write_text(f"FROM {registry.host}/pin/missing:1\n")
    failed = pybuild("pin", str(df), check=False, env={"PYBUILD_REGISTRY_RETRIES": "0"})
    assert failed.returncode == 1 and "MANIFEST_UNKNOWN" in failed.stderr or "NAME_UNKNOWN" in failed.stderr
    assert df.read_text() == f"FROM {registry.host}/pin/missing:1\n"  # untouched on failure


@needs_registry
def test_pin_keeps_crlf_and_locates_errors(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/pin/{uuid.uuid4().hex[:8]}:1"
    pushed = push(Store.open(busybox_store), "busybox:latest", parse_reference(name),
                  options=RegistryOptions(backoff=0.01))
    df = tmp_path / "Dockerfile"
    df.write_bytes(f"# base\r\nFROM {name} AS base\r\nRUN true\r\n".encode())
    pybuild("pin", str(df))
    assert df.read_bytes() == f"# base\r\nFROM {name}@{pushed.digest} AS base\r\nRUN true\r\n".encode()

    missing = f"{registry.host}/pin/missing-{uuid.uuid4().hex[:8]}:1"
    for text, where, what, written in (
            (f"FROM {name}\nFROM   {missing}\n", ":2:8:", missing.split("/", 1)[1],
             f"FROM {name}@{pushed.digest}\nFROM   {missing}\n"),  # what can be pinned is, the rest reported
            ("# x\nFROM Foo/Bar:1\n", ":2:6:", "must be lowercase", "# x\nFROM Foo/Bar:1\n")):
        df.write_text(text)
        proc = pybuild("pin", str(df), check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{df}{where}" in proc.stderr and what in proc.stderr, proc.stderr
        assert df.read_text() == written


@needs_registry
def test_pin_reports_each_line_and_check_fails_a_variable_from(busybox_store: Path, registry: Registry,
                                                               tmp_path: Path) -> None:
    name = f"{registry.host}/pin/{uuid.uuid4().hex[:8]}:1"
    pushed = push(Store.open(busybox_store), "busybox:latest", parse_reference(name),
                  options=RegistryOptions(backoff=0.01))
    df = tmp_path / "Dockerfile"
    text = (f"ARG TAG=1\nFROM {registry.host}/pin/demo:${{TAG}} AS a\nFROM {registry.host}/pin/gone:1 AS b\n"
            f"FROM {name}\n")
    df.write_text(text)
    check = pybuild("pin", "--check", str(df), check=False)
    assert check.returncode == 1
    assert f"{df}:2:6: {registry.host}/pin/demo:${{TAG}} is not pinned: it names its image with a variable" \
        in check.stderr
    assert f"{df}:3: {registry.host}/pin/gone:1 is not pinned" in check.stdout
    assert f"{df}:4: {name} is not pinned" in check.stdout
    proc = pybuild("pin", str(df), check=False, env={"PYBUILD_REGISTRY_RETRIES": "0"})
    assert proc.returncode == 1
    assert f"{df}:4: {name}@{pushed.digest}" in proc.stdout  # pinned and written
    assert f"{df}:3:6: " in proc.stderr and f"{df}:2:6: " in proc.stderr  # each other line reported
    assert df.read_text() == text.replace(f"FROM {name}\n", f"FROM {name}@{pushed.digest}\n")
