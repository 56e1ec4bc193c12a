"""`.dockerignore` files and Docker's path patterns.

Semantics follow moby's ignorefile reader and patternmatcher (re-implemented here, not copied):

- reading (`parse_ignore_file`): a UTF-8 BOM on the first line is dropped; a line whose first
  character is `#` is a comment; whitespace around a line is trimmed and empty lines skipped; a
  leading `!` (then trimmed again) makes an exception; the pattern is cleaned like Go's
  `filepath.Clean` (`./a` -> `a`, `a//b/` -> `a/b`, `a/../b` -> `b`) and a leading `/` is
  dropped (paths are relative to the context root).
- matching (`PatternMatcher.matches`): Go `filepath.Match` syntax (`*` and `?` never match `/`,
  `[a-z]`, `[^a]`, `\\` escapes) plus `**`, which matches any number of path segments, even none.
  A pattern matches a path when it matches the path itself or any of its parent directories
  (`node_modules` ignores `node_modules/x/y`). Patterns apply in order and the last one that
  matches wins, so `!keep.md` after `*.md` re-includes `keep.md`.

Public API:
    parse_ignore_file(text, *, filename) -> list[str]   cleaned patterns, `!` kept as a prefix
    PatternMatcher(patterns, *, source)                  raises ContextError on a bad pattern
      .matches(path) -> bool                             path is slash-separated, context-relative
      .state_of(dir) / .match_child(path, parent_state)  the same answers during a walk, testing
                                                         each pattern once per entry
      .has_exceptions                                    True when any pattern starts with `!`
      .may_reinclude_under(dir) -> bool                  can an exception match below an excluded dir
    find_ignore_file(context_dir, dockerfile) -> Path | None
                                                         `<Dockerfile>.dockerignore` beats `.dockerignore`
    clean_path(path) -> str                              Go's filepath.Clean for `/` paths
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from builder.errors import ContextError

__all__ = ["PatternMatcher", "clean_path", "find_ignore_file", "go_match", "parse_ignore_file", "validate_pattern"]

_BOM = "\ufeff"
_REGEX_SPECIAL = set(".+()|{}$")  # regex meta characters that are literal in a filepath pattern


def clean_path(path: str) -> str:
    """Go's `path.Clean`: collapse `//`, drop `.`, resolve `..` lexically; "" becomes "."."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def parse_ignore_file(text: str, *, filename: str = ".dockerignore") -> list[str]:
    """The patterns of an ignore file, cleaned, in order; exceptions keep their `!` prefix."""
    patterns: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        if invert:
            if not pattern:
                raise ContextError(f'{filename}:{lineno}: illegal exclusion pattern: "!"')
            pattern = "!" + pattern
        try:
            validate_pattern(pattern.removeprefix("!"))
        except ValueError as exc:
            raise ContextError(f"{filename}:{lineno}: bad pattern {raw.strip()!r}: {exc}") from None
        patterns.append(pattern)
    return patterns


def validate_pattern(pattern: str) -> None:
    """Raise ValueError when `pattern` is not valid `filepath.Match` syntax (as Go checks it)."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            i += 2
            continue
        if ch != "[":
            i += 1
            continue
        i += 1
        if i < n and pattern[i] == "^":
            i += 1
        first = True
        while True:
            if i >= n:
                raise ValueError("unterminated [")
            if pattern[i] == "]" and not first:
                i += 1
                break
            i = _class_char(pattern, i)
            if i < n and pattern[i] == "-":
                i = _class_char(pattern, i + 1)
            first = False


def _class_char(pattern: str, i: int) -> int:
    """Index after one character of a `[...]` class (Go's getEsc rules)."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("bad character class")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("trailing backslash in character class")
    return i + 1


class _Pattern:
    """One compiled pattern: exact, prefix (`a/**`), suffix (`**/a`) or regular expression."""

    __slots__ = ("text", "exception", "kind", "regex", "segments")

    def __init__(self, text: str, exception: bool) -> None:
        self.text, self.exception = text, exception
        self.segments = text.split("/")
        self.regex: re.Pattern[str] | None = None
        self.kind = self._compile()

    def _compile(self) -> str:
        p, n = self.text, len(self.text)
        kind, out, i = "exact", ["^"], 0
        while i < n:
            ch = p[i]
            if ch == "*" and i + 1 < n and p[i + 1] == "*":
                start, i = i, i + 2
                if i < n and p[i] == "/":
                    i += 1
                if i >= n:  # a trailing `**` accepts everything below
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(.*/)?")
                    kind = "regex"
                if start == 0:
                    kind = "suffix"
                continue
            if ch == "*":
                out.append("[^/]*")
                kind = "regex"
            elif ch == "?":
                out.append("[^/]")
                kind = "regex"
            elif ch in _REGEX_SPECIAL:
                out.append("\\" + ch)
            elif ch == "\\":
                if i + 1 < n:
                    i += 1
                    out.append(re.escape(p[i]))
                    kind = "regex"
                else:
                    out.append("\\\\")
            elif ch in "[]":
                out.append(ch)
                kind = "regex"
            else:
                out.append(ch)  # `^` only appears inside a class, where it negates
            i += 1
        if kind == "regex":
            with warnings.catch_warnings():  # `[[]` is a valid class in Go; Python only warns about it
                warnings.simplefilter("ignore", FutureWarning)
                self.regex = re.compile("".join(out) + "$")
        return kind

    def match(self, path: str) -> bool:
        kind = self.kind
        if kind == "exact":
            return path == self.text
        if kind == "prefix":
            return path.startswith(self.text[:-2])
        if kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


class PatternMatcher:
    """Ordered `.dockerignore` patterns; the last pattern that matches a path decides."""

    def __init__(self, patterns: list[str], *, source: str = ".dockerignore") -> None:
        self._patterns: list[_Pattern] = []
        for text in patterns:
            text = text.strip()
            if not text:
                continue
            text = clean_path(text)
            exception = text.startswith("!")
            if exception:
                text = text[1:]
                if not text:
                    raise ContextError(f'{source}: illegal exclusion pattern: "!"')
            try:
                validate_pattern(text)
                self._patterns.append(_Pattern(text, exception))
            except (ValueError, re.error) as exc:
                raise ContextError(f"{source}: bad pattern {text!r}: {exc}") from None
        self.has_exceptions = any(p.exception for p in self._patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    @property
    def patterns(self) -> list[str]:
        return [("!" if p.exception else "") + p.text for p in self._patterns]

    def matches(self, path: str) -> bool:
        """True when `path` (slash-separated, relative to the root) is excluded."""
        path = clean_path(path)
        if path == ".":
            return False
        parents: list[str] = []
        slash = path.find("/")
        while slash != -1:
            parents.append(path[:slash])
            slash = path.find("/", slash + 1)
        matched = False
        for pattern in self._patterns:
            if pattern.exception != matched:
                continue  # an exclusion cannot change an excluded path, nor an exception an included one
            hit = pattern.match(path) or any(pattern.match(parent) for parent in parents)
            if hit:
                matched = not pattern.exception
        return matched

    def state_of(self, path: str) -> tuple[bool, tuple[bool, ...]]:
        """`match_child` applied from the root down to `path`: (excluded, state for its children)."""
        state: tuple[bool, ...] = (False,) * len(self._patterns)
        excluded = False
        parts = [p for p in clean_path(path).split("/") if p not in ("", ".")]
        for i in range(len(parts)):
            excluded, state = self.match_child("/".join(parts[: i + 1]), state)
        return excluded, state

    def match_child(self, path: str, parent: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
        """Is `path` excluded, given its parent directory's state (from `state_of` or a previous
        `match_child`)? Returns the answer and this path's own state for its children.

        The walk of a context uses this (one test per pattern per entry, never re-testing the
        parents), with the same results as moby's MatchesUsingParentResults."""
        matched = False
        state = []
        for pattern, inherited in zip(self._patterns, parent):
            hit = inherited
            if not hit and pattern.exception == matched:
                hit = pattern.match(path)
            state.append(hit)
            if hit:
                matched = not pattern.exception
        return matched, tuple(state)

    def may_reinclude_under(self, directory: str) -> bool:
        """Could an exception pattern match something below the excluded `directory`?

        Used to prune the walk: an excluded directory is skipped unless this says yes.
        """
        if not self.has_exceptions:
            return False
        dir_parts = clean_path(directory).split("/")
        for pattern in self._patterns:
            if not pattern.exception:
                continue
            if "**" in pattern.text:
                return True
            segs = pattern.segments
            if len(segs) <= len(dir_parts):
                continue
            if all(go_match(seg, part) for seg, part in zip(segs, dir_parts)):
                return True
        return False


def go_match(pattern: str, name: str) -> bool:
    """Go's `filepath.Match` for a single name or a slash path (`*` never matches `/`)."""
    if not any(c in pattern for c in "*?[\\"):
        return pattern == name
    return _glob_regex(pattern).match(name) is not None


_glob_cache: dict[str, re.Pattern[str]] = {}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    cached = _glob_cache.get(pattern)
    if cached is not None:
        return cached
    try:
        validate_pattern(pattern)
    except ValueError as exc:
        raise ContextError(f"bad wildcard {pattern!r}: {exc}") from None
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i += 1
            out.append("[")
            if pattern[i] == "^":
                out.append("^")
                i += 1
            while pattern[i] != "]":
                i, lo = _class_member(pattern, i)
                out.append(re.escape(lo))
                if pattern[i] == "-":
                    i, hi = _class_member(pattern, i + 1)
                    out.append("-" + re.escape(hi))
            out.append("]")
        else:
            out.append(re.escape(ch))
        i += 1
    compiled = re.compile("".join(out) + r"\Z", re.DOTALL)
    _glob_cache[pattern] = compiled
    return compiled


def _class_member(pattern: str, i: int) -> tuple[int, str]:
    """One (possibly escaped) character inside a validated `[...]` class: (next index, char)."""
    if pattern[i] == "\\":
        i += 1
    return i + 1, pattern[i]


def find_ignore_file(context_dir: Path, dockerfile: Path | None) -> Path | None:
    """The ignore file BuildKit uses: `<Dockerfile>.dockerignore` next to the Dockerfile, else
    `.dockerignore` at the context root, else None. Files outside the context are not followed
    through symlinks (BuildKit never reads outside the paths it was given)."""
    if dockerfile is not None:
        specific = Path(str(dockerfile) + ".dockerignore")
        if specific.is_file():
            return specific
    root_file = context_dir / ".dockerignore"
    if root_file.is_symlink():
        return None
    return root_file if root_file.is_file() else None
