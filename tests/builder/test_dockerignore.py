"""`.dockerignore` reading and matching, table-driven, with Docker's (moby patternmatcher) rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build import dockerignore
from builder.build.dockerignore import PatternMatcher, clean_path, find_ignore_file, go_match, parse_ignore_file
from builder.errors import ContextError

# (patterns, path, excluded?)
MATCH_TABLE: list[tuple[list[str], str, bool]] = [
    (["*.go"], "foo.go", True),
    (["*.go"], "a/foo.go", False),              # `*` never crosses `/`
    (["*"], "a/b", True),                       # ... but the parent `a` matches
    (["**/*.go"], "a/b/foo.go", True),
    (["**/*.go"], "foo.go", True),              # `**/` matches zero segments too
    (["**"], "anything/at/all", True),
    (["docs"], "docs/README.md", True),         # a pattern excludes everything below a match
    (["docs"], "docsx", False),
    (["docs/*.md"], "docs/a/b.md", False),
    (["docs/*.md"], "docs/b.md", True),
    (["a/**"], "a/b/c", True),
    (["a/**"], "a", False),                     # `a/**` is what is inside `a`, not `a` itself
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["a/**/b"], "a/xb", False),
    (["**/foo"], "foo", True),
    (["**/foo"], "x/y/foo", True),
    (["**/foo"], "xfoo", False),
    (["**/foo"], "x/foo/bar", True),
    (["**foo"], "xfoo", True),                  # Docker's suffix rule: a leading `**` then text
    (["[a-c].txt"], "b.txt", True),
    (["[a-c].txt"], "d.txt", False),
    (["[^a].txt"], "a.txt", False),
    (["[^a].txt"], "b.txt", True),
    (["\\*.txt"], "*.txt", True),                # an escaped `*` is literal
    (["\\*.txt"], "a.txt", False),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["?"], "a/b", True),
    (["foo.bar"], "fooxbar", False),            # `.` is literal
    (["a+b(c)"], "a+b(c)", True),
    (["dir/"], "dir/file", True),               # trailing slash cleaned away
    (["/abs"], "abs", True),                    # a leading slash is the context root
    (["./rel/x"], "rel/x", True),
    (["a/../b"], "b", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["!README.md", "*.md"], "README.md", True),   # order matters: the last match wins
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/keep/deeper", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["**/*.log", "!important/*.log"], "important/a.log", False),
    (["**/*.log", "!important/*.log"], "other/a.log", True),
    ([".git"], ".git/objects/ab/cd", True),
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["temp?"], "tempa", True),
    (["[[]x"], "[x", True),                        # `[` inside a class is literal (Go), no warning
    (["a[&&b]c"], "a&c", True),
    (["é*"], "éa", True),
    ([], "anything", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), MATCH_TABLE,
                         ids=[f"{'+'.join(p) or 'none'}~{f}" for p, f, _ in MATCH_TABLE])
def test_matches(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher(parse_ignore_file("\n".join(patterns))).matches(path) is excluded


# (file text, patterns read)
READ_TABLE: list[tuple[str, list[str]]] = [
    ("# a comment\n*.o\n", ["*.o"]),
    ("  # not a comment: the # is not first\n", ["# not a comment: the # is not first"]),
    ("\ufeff*.o\n", ["*.o"]),                        # a BOM on the first line is dropped
    ("  spaced  \n\n\t\n", ["spaced"]),
    ("! keep \n", ["!keep"]),                        # `!` then whitespace
    ("/root/file\n", ["root/file"]),
    ("./a//b/\n", ["a/b"]),
    ("!./a/../b\n", ["!b"]),
    ("/\n", ["/"]),                                 # a lone `/` stays (it matches nothing)
    ("a\r\nb\r\n", ["a", "b"]),
]


@pytest.mark.parametrize(("text", "patterns"), READ_TABLE)
def test_read(text: str, patterns: list[str]) -> None:
    assert parse_ignore_file(text) == patterns


@pytest.mark.parametrize(("text", "line"), [("ok\n!\n", 2), ("ok\n[abc\n", 2), ("x\\\n", 1), ("[]a]\n", 1)])
def test_bad_patterns_name_the_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ContextError, match=rf"^\.dockerignore:{line}: "):
        parse_ignore_file(text)


CLEAN_TABLE = [("", "."), ("a//b", "a/b"), ("./a", "a"), ("a/..", "."), ("../a", "../a"), ("/../a", "/a"),
               ("/", "/"), ("a/./b/", "a/b")]


@pytest.mark.parametrize(("path", "cleaned"), CLEAN_TABLE)
def test_clean_path_is_go_path_clean(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


GLOB_TABLE = [("*.txt", "a.txt", True), ("*.txt", "d/a.txt", False), ("a?c", "abc", True), ("[!a]", "!", True),
              ("[a-c]x", "bx", True), ("[\\]]", "]", True), ("\\[x\\]", "[x]", True), ("*", ".hidden", True),
              ("[^0-9]", "5", False)]


@pytest.mark.parametrize(("pattern", "name", "hit"), GLOB_TABLE)
def test_go_match(pattern: str, name: str, hit: bool) -> None:
    assert go_match(pattern, name) is hit


@pytest.mark.parametrize(("patterns", "directory", "may"), [
    (["dir"], "dir", False),
    (["dir", "!dir/keep"], "dir", True),
    (["dir", "!other/keep"], "dir", False),
    (["dir", "!**/keep"], "dir", True),
    (["*", "!src/*.py"], "src", True),
    (["*", "!src/*.py"], "docs", False),
])
def test_may_reinclude_under(patterns: list[str], directory: str, may: bool) -> None:
    assert PatternMatcher(patterns).may_reinclude_under(directory) is may


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    df = tmp_path / "build" / "app.Dockerfile"
    df.parent.mkdir()
    df.write_text("FROM scratch\n")
    assert find_ignore_file(tmp_path, df) == tmp_path / ".dockerignore"
    specific = tmp_path / "build" / "app.Dockerfile.dockerignore"
    specific.write_text("b\n")
    assert find_ignore_file(tmp_path, df) == specific
    assert find_ignore_file(tmp_path, None) == tmp_path / ".dockerignore"


def test_ignore_file_symlinked_from_outside_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("*\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / ".dockerignore").symlink_to(outside)
    assert find_ignore_file(ctx, None) is None


def test_all_lists_every_public_name() -> None:
    public = {n for n in vars(dockerignore) if not n.startswith("_") and callable(getattr(dockerignore, n))
              and getattr(getattr(dockerignore, n), "__module__", "") == dockerignore.__name__}
    assert public == set(dockerignore.__all__)


@pytest.mark.parametrize(("patterns", "path", "excluded"), MATCH_TABLE,
                         ids=[f"{'+'.join(p) or 'none'}~{f}" for p, f, _ in MATCH_TABLE])
def test_walk_state_gives_the_same_answers(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher(parse_ignore_file("\n".join(patterns))).state_of(path)[0] is excluded
