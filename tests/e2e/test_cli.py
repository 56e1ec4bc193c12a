"""The command line itself: help, dispatch, exit codes, no tracebacks."""

from __future__ import annotations

from builder.cli import COMMANDS
from tests.conftest import pybuild


def test_top_help_lists_every_command_with_a_description() -> None:
    out = pybuild("--help").stdout
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name}" in out and summary in out


def test_every_subcommand_has_help() -> None:
    for name in COMMANDS:
        proc = pybuild(name, "--help")
        assert proc.stdout.startswith(f"usage: pybuild {name}"), name


def test_build_help_has_docker_build_flags() -> None:
    out = pybuild("build", "--help").stdout
    for flag in ("--tag", "--file", "--build-arg", "--target", "--no-cache", "--label", "--progress",
                 "--output", "--push", "--iidfile", "--quiet"):
        assert flag in out


def test_unknown_command_is_a_clear_error() -> None:
    proc = pybuild("frobnicate", check=False)
    assert proc.returncode == 1
    assert "'frobnicate' is not a pybuild command" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_arguments_prints_usage_as_docker_does() -> None:
    proc = pybuild(check=False)
    assert proc.returncode == 0 and "Usage: pybuild" in proc.stdout  # docker with no command exits 0 too


def test_version() -> None:
    assert pybuild("--version").stdout.startswith("pybuild ")


def test_build_arg_names_are_what_an_arg_can_declare() -> None:
    """As buildx: any name (`ARG my-arg` is valid); only an empty or blank-holding one is refused."""
    import pytest

    from builder.build.options import parse_build_args
    from builder.errors import BuildError

    assert parse_build_args(["my-arg=1", "a.b=", "FROM_ENV", "UNSET"], {"FROM_ENV": "e"}) == \
        {"my-arg": "1", "a.b": "", "FROM_ENV": "e"}
    for bad in ("=x", "", "a b=1"):
        with pytest.raises(BuildError, match="invalid --build-arg"):
            parse_build_args([bad], {})


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`pybuild --help | head -1`: the closed pipe ends pybuild quietly with 128 + SIGPIPE."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    read, write = os.pipe()
    os.close(read)  # the reader is gone before pybuild writes
    proc = subprocess.run([sys.executable, "-m", "builder", "--help"], stdout=write, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True, timeout=60)
    os.close(write)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
