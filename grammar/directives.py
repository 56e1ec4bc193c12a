"""Parser directives: leading `# syntax=`, `# escape=` and `# check=` comment lines.

As in BuildKit, directives are only recognised before anything else (the first line that is
not a directive ends them, a blank line included), keys are case-insensitive, and each may
appear once.
"""

from __future__ import annotations

import re

from grammar.errors import DockerfileSyntaxError

VALID = ("syntax", "escape", "check")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.+?)[ \t\n\f\r]*\Z")


class DirectiveParser:
    """Feeds lines one at a time; collects (name, value) until the first non-directive line."""

    __slots__ = ("done", "found")

    def __init__(self) -> None:
        self.done = False
        self.found: list[tuple[str, str, int]] = []  # (name, value, line)

    def feed(self, line: str, lineno: int) -> tuple[str, str] | None:
        """Look at one line (newline and leading blanks already removed)."""
        if self.done:
            return None
        if not line.startswith("#"):
            self.done = True
            return None
        m = _DIRECTIVE.match(line[1:].lstrip())
        if not m or m.group(1).lower() not in VALID:
            self.done = True
            return None
        name, value = m.group(1).lower(), m.group(2)
        if any(n == name for n, _, _ in self.found):
            raise DockerfileSyntaxError(f"only one {name} parser directive can be used",
                                        line=lineno, column=1, source_line=line,
                                        hint=f"keep one '# {name}=' line")
        if name == "escape" and value not in ("\\", "`"):
            raise DockerfileSyntaxError(f"invalid escape token '{value}' does not match ` or \\",
                                        line=lineno, column=1, source_line=line,
                                        hint="write '# escape=\\' (the default) or '# escape=`'")
        self.found.append((name, value, lineno))
        return name, value
