"""Docker's habits for mistakes: CLI errors worded and coded as docker's, every build option checked
before the first step, a missing base image or a mistyped stage named with a "did you mean"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import pybuild


@pytest.mark.parametrize(("args", "code", "first_line"), [
    (("build", "--xyz", "."), 125, "unknown flag: --xyz"),
    (("build", "--xyz=1", "."), 125, "unknown flag: --xyz"),
    (("build", "-x", "."), 125, "unknown shorthand flag: 'x' in -x"),
    (("build", "--ta", "x", "."), 125, "unknown flag: --ta"),  # no abbreviations, as docker
    (("build", "-t"), 125, "flag needs an argument: --tag"),
    (("build", "--progress=bogus", "."), 125, 'invalid argument "bogus" for "--progress" flag: choose from auto'),
    (("build", "--jobs", "x", "."), 125, 'invalid argument "x" for "--jobs" flag'),
    (("images", "--xyz"), 125, "unknown flag: --xyz"),
    (("build",), 1, 'pybuild: "pybuild build" requires 1 argument'),
    (("inspect",), 1, 'pybuild: "pybuild inspect" requires at least 1 argument'),
])
def test_cli_errors_are_dockers(args: tuple[str, ...], code: int, first_line: str, tmp_path: Path) -> None:
    proc = pybuild(*args, check=False, cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, proc.stderr
    assert lines[0].startswith(first_line), proc.stderr
    assert lines[1] == f"See 'pybuild {args[0]} --help'.", proc.stderr


def test_unknown_command_exits_1_with_a_pointer_to_help(tmp_path: Path) -> None:
    proc = pybuild("frobnicate", check=False, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == "pybuild: 'frobnicate' is not a pybuild command nor a build context.\nSee 'pybuild --help'.\n"


@pytest.mark.parametrize(("flags", "message"), [
    (("-t", "ok:1", "-t", "Bad:Tag!"), 'invalid tag "Bad:Tag!": invalid reference format'),
    (("-t", "app@sha256:" + "a" * 64), 'invalid tag "app@sha256:'),
    (("--platform", "linux/amd64/v1/x"), "invalid --platform 'linux/amd64/v1/x'"),
    (("--platform", "linux/amd64,foo//bar"), "invalid --platform 'linux/amd64,foo//bar': invalid platform 'foo//bar'"),
    (("--platform", "linux/amd64,"), "an empty platform"),
    (("--output", "type=registry"), "--push needs a name"),
    (("--output", "type=image,name=Bad!"), 'invalid --output name "Bad!"'),
    (("--output", "type=nope"), "invalid --output 'type=nope'"),
    (("--output", "type=local"), "--output type=local needs dest=PATH"),
    (("--cache-to", "type=registry,ref=Bad:Ref!"), "invalid --cache-to 'type=registry,ref=Bad:Ref!': invalid reference"),
    (("--cache-from", "type=bogus"), "invalid --cache-from 'type=bogus'"),
    (("--secret", "id=x,src=/nonexistent/secret"), "--secret id=x: cannot read /nonexistent/secret"),
    (("--build-arg", "=x"), "invalid --build-arg '=x'"),
])
def test_every_option_is_checked_before_the_first_step(flags: tuple[str, ...], message: str, tmp_path: Path,
                                                       store_root: Path) -> None:
    """Nothing runs (the Dockerfile's FROM names no image at all, so any step would fail otherwise)."""
    (tmp_path / "Dockerfile").write_text("FROM nosuch.invalid/never:1\nRUN touch /x\n")
    proc = pybuild("build", "--progress=plain", *flags, str(tmp_path), check=False)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "#1" not in proc.stderr and "nosuch.invalid" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_image_output_name_names_the_image(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    pybuild("build", "-q", "--output", "type=image,name=named:1", str(tmp_path), env=store)
    listed = pybuild("images", env=store).stdout
    assert "named " in listed


def test_a_missing_base_image_is_named_with_a_local_suggestion(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybx\nRUN true\n")
    proc = pybuild("build", str(tmp_path), check=False, env=store)
    assert proc.returncode == 1
    first = next(ln for ln in proc.stderr.splitlines() if ln.startswith("Dockerfile:"))
    assert first.startswith("Dockerfile:1:1: image 'busybx' is ") and (
        "neither in the store nor reachable" in first or "is not in the store" in first), proc.stderr
    assert "hint: did you mean busybox:latest? (a local image)" in proc.stderr


def test_copy_from_a_mistyped_stage_suggests_the_stage(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS builder\nRUN echo hi > /x\nFROM busybox\nRUN echo run\nCOPY --from=buidler /x /x\n")
    proc = pybuild("build", "--progress=plain", str(tmp_path), check=False, env=store)
    assert proc.returncode == 1
    assert "Dockerfile:5:1: --from=buidler: no stage of this Dockerfile has that name, nor any image" in proc.stderr
    assert "hint: did you mean the stage 'builder'?" in proc.stderr
    assert "echo run" not in proc.stderr  # found before the first step


def test_a_mount_from_a_mistyped_stage_suggests_the_stage(store: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS deps\nRUN echo hi > /x\nFROM busybox\nRUN --mount=from=dpes,target=/d cat /d/x\n")
    proc = pybuild("build", str(tmp_path), check=False, env=store)
    assert proc.returncode == 1 and "hint: did you mean the stage 'deps'?" in proc.stderr, proc.stderr
