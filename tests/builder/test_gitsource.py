"""builder.build.sources.git: which ADD sources are git repositories, and how their URL splits."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.build.sources.git import GitSource, is_download_url, is_git_url, parse_git_url


@pytest.mark.parametrize("source, git", [
    ("git://127.0.0.1/repo.git", True),
    ("git://host/repo", True),
    ("ssh://git@host/org/repo.git", True),
    ("git@github.com:org/repo.git", True),
    ("https://host/org/repo.git", True),
    ("https://host/org/repo.git#v1:sub", True),
    ("http://127.0.0.1:8000/repo.git/", True),
    ("https://host/file.tar.gz", False),
    ("https://host/repo.git.tar", False),
    ("https://host/download?name=x.git", False),
    ("src/repo.git", False),
])
def test_git_sources_follow_buildkits_rules(source: str, git: bool) -> None:
    assert is_git_url(source) is git
    assert is_download_url(source) is (source.startswith("http") and not git)


@pytest.mark.parametrize("source, want", [
    ("git://h/r.git", GitSource("git://h/r.git")),
    ("git://h/r.git#main", GitSource("git://h/r.git", "main")),
    ("git://h/r.git#v1.2:docs/api/", GitSource("git://h/r.git", "v1.2", "docs/api")),
    ("git://h/r.git#:sub", GitSource("git://h/r.git", "", "sub")),
    ("git@h:o/r.git#refs/pull/1/head", GitSource("git@h:o/r.git", "refs/pull/1/head")),
])
def test_fragment_is_ref_then_subdir(source: str, want: GitSource) -> None:
    assert parse_git_url(source) == want


def test_subdir_cannot_leave_the_repository() -> None:
    with pytest.raises(BuildError, match="leaves the repository"):
        parse_git_url("git://h/r.git#main:../../etc")


def test_credentials_never_shown() -> None:
    assert parse_git_url("https://user:token@h/r.git#main").shown == "https://h/r.git"


def test_ssh_user_names_stay_passwords_go() -> None:
    assert parse_git_url("ssh://git@h:2222/r.git").shown == "ssh://git@h:2222/r.git"
    assert parse_git_url("ssh://git:secret@h/r.git").shown == "ssh://git@h/r.git"
    assert parse_git_url("git@h:o/r.git").shown == "git@h:o/r.git"
