"""Which checks run and whether they fail the build: `# check=skip=A,B;error=true` (the parser
directive), the `BUILDKIT_DOCKERFILE_CHECK` build-arg (it replaces the directive), and
`# check=skip=...` comments right above one instruction (they add skips for it alone)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from builder.errors import BuildError

__all__ = ["CheckConfig", "parse_check_options", "instruction_config"]

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """BuildKit's linter.Config: skipped rules, `skip=all`, experimental rules, `error=true`."""

    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    experimental: frozenset[str] = frozenset()
    experimental_all: bool = False
    error: bool = False

    def enabled(self, name: str, experimental: bool) -> bool:
        if experimental:
            return self.experimental_all or name in self.experimental
        return not (self.skip_all or name in self.skip)

    def merged(self, other: CheckConfig) -> CheckConfig:
        """Skips and experimental rules added (as BuildKit's WithMergedConfig); `error` kept."""
        return replace(self, skip=self.skip | other.skip, skip_all=self.skip_all or other.skip_all,
                       experimental=self.experimental | other.experimental,
                       experimental_all=self.experimental_all or other.experimental_all)


def parse_check_options(text: str) -> CheckConfig:
    """`skip=A,B|all;experimental=C|all;error=true` as BuildKit's ParseLintOptions reads it."""
    text = text.strip()
    if not text:
        return CheckConfig()
    skip: frozenset[str] = frozenset()
    experimental: frozenset[str] = frozenset()
    skip_all = experimental_all = error = False
    for part in text.split(";", 2):
        key, eq, value = part.partition("=")
        if not eq:
            raise BuildError(f"invalid check option {part!r}", hint="use skip=RULE[,RULE]|all;error=true|false")
        key, value = key.strip(), value.strip()
        if key == "skip":
            skip_all = value == "all"
            skip = frozenset() if skip_all else frozenset(v.strip() for v in value.split(","))
        elif key == "experimental":
            experimental_all = value == "all"
            experimental = frozenset() if experimental_all else frozenset(v.strip() for v in value.split(","))
        elif key == "error":
            if value not in _TRUE + _FALSE:
                raise BuildError(f"failed to parse check option {part!r}: {value!r} is not a boolean")
            error = value in _TRUE
        else:
            raise BuildError(f"invalid check option {key!r}", hint="the keys are skip, experimental and error")
    return CheckConfig(skip, skip_all, experimental, experimental_all, error)


def instruction_config(base: CheckConfig, comments: list[str]) -> CheckConfig:
    """The configuration for one instruction: the first `# check=...` among the comments above it
    (its value cut at the first blank, so `# check=skip=all // why` works) merged into `base`."""
    for comment in comments:
        m = _DIRECTIVE.match(comment)
        if m is None or m.group(1).lower() != "check":
            continue
        try:
            return base.merged(parse_check_options(m.group(2).split(" ", 1)[0]))
        except BuildError:
            return base
    return base
