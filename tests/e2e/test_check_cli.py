"""`pybuild check`, `build --check` and the checks around a build, as buildx shows them."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from tests.builder.registry_server import Registry, needs_registry
from tests.conftest import pybuild

DOCKERFILE = "FROM busybox as base\nENV a b\nCOPY $nope /x\nCMD echo hi\n"


def _ctx(tmp_path: Path, text: str, ignore: str | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(text)
    (ctx / "x").write_text("x\n")
    if ignore is not None:
        (ctx / ".dockerignore").write_text(ignore)
    return ctx


def test_check_prints_each_warning_with_its_link_and_lines(store: dict[str, str], tmp_path: Path) -> None:
    proc = pybuild("check", str(_ctx(tmp_path, DOCKERFILE)), env=store, check=False)
    assert proc.returncode == 1
    out = proc.stdout
    assert out.startswith("Check complete, 4 warnings have been found!\n")
    assert ("\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n"
            "'as' and 'FROM' keywords' casing do not match\nDockerfile:1\n--------------------\n"
            "   1 | >>> FROM busybox as base\n") in out
    for rule in ("LegacyKeyValueFormat", "UndefinedVar", "JSONArgsRecommended"):
        assert f"WARNING: {rule} - " in out


def test_check_json_is_buildkits_lint_result(store: dict[str, str], tmp_path: Path) -> None:
    proc = pybuild("check", "--format", "json", str(_ctx(tmp_path, DOCKERFILE)), env=store, check=False)
    data = json.loads(proc.stdout)
    assert [w["ruleName"] for w in data["warnings"]] == [
        "FromAsCasing", "LegacyKeyValueFormat", "UndefinedVar", "JSONArgsRecommended"]
    undefined = data["warnings"][2]
    assert undefined["detail"] == "Usage of undefined variable '$nope'"
    assert undefined["url"] == "https://docs.docker.com/go/dockerfile/rule/undefined-var/"
    assert undefined["location"]["ranges"][0]["start"]["line"] == 3
    assert base64.b64decode(data["sources"][0]["data"]).decode() == DOCKERFILE
    assert "buildError" not in data


def test_a_clean_file_passes_and_a_skipped_rule_is_silent(store: dict[str, str], tmp_path: Path) -> None:
    clean = pybuild("check", str(_ctx(tmp_path, "FROM busybox AS base\nENV a=b\nCMD [\"echo\"]\n")), env=store)
    assert clean.stdout == "Check complete, no warnings found.\n"
    skipped = pybuild("check", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=FromAsCasing",
                      str(_ctx(tmp_path, "FROM busybox as base\n")), env=store)
    assert skipped.returncode == 0


def test_base_image_env_is_known_and_dockerignore_is_read(store: dict[str, str], tmp_path: Path) -> None:
    text = "FROM busybox\nCOPY x /x\nRUN echo $PATH\nWORKDIR /w\nCOPY $PATH_ /y\n"
    proc = pybuild("check", "--format", "json", str(_ctx(tmp_path, text, ignore="x\n")), env=store, check=False)
    details = [w["detail"] for w in json.loads(proc.stdout)["warnings"]]
    assert details == ['Attempting to Copy file "x" that is excluded by .dockerignore',
                       "Usage of undefined variable '$PATH_' (did you mean $PATH?)"]


def test_build_check_builds_nothing_and_unknown_instructions_still_fail(store: dict[str, str],
                                                                        tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nMAINTAINER me\nBADCMD x\n")
    proc = pybuild("build", "--check", "-t", "never:1", str(ctx), env=store, check=False)
    assert proc.returncode == 1
    assert "WARNING: MaintainerDeprecated" in proc.stdout
    assert "Dockerfile:3:1: unknown instruction: BADCMD" in proc.stderr, proc.stderr
    assert "never" not in pybuild("images", env=store).stdout


def test_warnings_follow_a_build_and_its_cached_rebuild(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox AS base\nENV a b\nCMD [\"true\"]\n")
    summary = (' 1 warning found (use pybuild check for details):\n'
               ' - LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV key value" format '
               '(line 2)\n')
    for _ in range(3):  # built, then replayed by the no-op memo
        proc = pybuild("build", "-t", "warned:1", str(ctx), env=store)
        assert proc.stderr.endswith(summary), proc.stderr


def test_error_true_fails_the_build_before_its_first_step(store: dict[str, str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "# check=error=true\nFROM busybox as base\nRUN echo should-not-run\n")
    proc = pybuild("build", "--progress=plain", str(ctx), env=store, check=False)
    assert proc.returncode == 1
    assert "Dockerfile:2:1: lint violation found for rules: FromAsCasing" in proc.stderr
    assert "should-not-run" not in proc.stderr.replace("RUN echo should-not-run", "")
    off = pybuild("build", "--progress=plain", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all", str(ctx),
                  env=store)
    assert "should-not-run" in off.stderr and "warning" not in off.stderr
    assert "not consumed" not in off.stderr


@needs_registry
def test_a_base_image_only_in_a_registry_is_read_from_there(store: dict[str, str], registry: Registry,
                                                             tmp_path: Path) -> None:
    name = f"{registry.host}/check/{uuid.uuid4().hex[:8]}:1"
    ctx = _ctx(tmp_path, 'FROM busybox\nENV FROM_BASE=1\n')
    pybuild("build", "-q", "-t", name, str(ctx), env=store)
    pybuild("push", name, env=store)
    text = f"FROM {name}\nENV A=$FROM_BASE B=$PATH C=$NOT_SET\n"
    fresh = {"PYBUILD_ROOT": str(tmp_path / "fresh-store")}  # the image is in the registry only
    proc = pybuild("check", "--format", "json", str(_ctx(tmp_path, text)), env=fresh, check=False)
    details = [w["detail"] for w in json.loads(proc.stdout)["warnings"]]
    assert details == ["Usage of undefined variable '$NOT_SET'"], proc.stdout  # FROM_BASE and PATH: the base's
    assert not [p for p in (tmp_path / "fresh-store").rglob("*") if p.is_file() and p.stat().st_size > 1000]  # no layer
    gone = _ctx(tmp_path, f"FROM {registry.host}/check/absent:1\nENV C=$NOT_SET\n")
    quiet = pybuild("check", "--format", "json", str(gone), env=fresh, check=False)
    assert json.loads(quiet.stdout)["warnings"] == []  # an unknown base environment: no guess
