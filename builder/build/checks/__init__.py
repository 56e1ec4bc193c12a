"""BuildKit's build checks (`docker build --check`, the Dockerfile reference's "Build checks"):
the rules with their names, messages and documentation links (`rules`), the `# check=` /
`BUILDKIT_DOCKERFILE_CHECK` configuration and per-instruction `# check=skip=` comments (`config`),
the walk over a parsed Dockerfile that finds violations (`walk`), and their text and JSON reports
(`report`).

    from builder.build.checks import lint
    result = lint(dockerfile, text, reachable=None)   # None: every stage, as `--check`
"""

from __future__ import annotations

from builder.build.checks.config import CheckConfig, parse_check_options
from builder.build.checks.walk import CheckResult, Violation, lint

__all__ = ["CheckConfig", "CheckResult", "Violation", "lint", "parse_check_options"]
