"""`analyze --ci`: dive's three CI rules, from flags or a `.pybuild-analyze.yaml`.

The file uses dive's `.dive-ci` keys, so an existing dive configuration works as is:

    rules:
      lowestEfficiency: 0.95          # fail if efficiency < 0.95
      highestWastedBytes: 20MB        # fail if dive's wasted bytes > 20,000,000 (MiB = 2**20)
      highestUserWastedPercent: 0.20  # fail if wasted / user bytes > 0.20 ("20%" works too)

A value of `disabled` skips a rule. Only this small YAML subset is read (`key: value` lines,
one level of nesting, `#` comments), so no YAML library is needed. The rules judge dive's
figures, so a verdict matches what `dive --ci` says about the same image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.analyze_layers import ImageReport
from builder.errors import BuildError

CONFIG_NAME = ".pybuild-analyze.yaml"
RULES = ("lowestEfficiency", "highestWastedBytes", "highestUserWastedPercent")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class ConfigError(BuildError):
    """A threshold or the analyze configuration file is malformed."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """None means the rule is off."""

    lowest_efficiency: float | None = None
    highest_wasted_bytes: int | None = None
    highest_user_wasted_percent: float | None = None

    def merged(self, other: "Thresholds") -> "Thresholds":
        """`other`'s rules where set (command-line flags over the file), else ours."""
        return Thresholds(*(b if b is not None else a for a, b in zip(
            (self.lowest_efficiency, self.highest_wasted_bytes, self.highest_user_wasted_percent),
            (other.lowest_efficiency, other.highest_wasted_bytes, other.highest_user_wasted_percent))))


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    status: str  # PASS | FAIL | SKIP
    message: str = ""


def parse_bytes(text: str, *, where: str = "") -> int:
    """'20MB' -> 20000000, '1.5 MiB' -> 1572864, '123' -> 123."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"{where}invalid size {text!r}", hint="use a number of bytes or e.g. 20MB, 1.5GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def parse_ratio(text: str, *, where: str = "") -> float:
    """'0.2' -> 0.2, '20%' -> 0.2."""
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ConfigError(f"{where}invalid ratio {text!r}", hint="use e.g. 0.95 or 95%") from None


def parse_yaml_subset(text: str, *, filename: str) -> dict[str, dict[str, str] | str]:
    """`key: value` lines with one level of indented nesting; errors name file and line."""
    out: dict[str, dict[str, str] | str] = {}
    section: dict[str, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"\s+#.*$|^#.*$", "", raw).rstrip()
        if not line.strip():
            continue
        m = re.fullmatch(r"(\s*)([A-Za-z0-9_.-]+)\s*:\s*(.*)", line)
        if not m:
            raise ConfigError(f"{filename}:{lineno}: expected 'key: value', got {raw.strip()!r}")
        indent, key, value = m.groups()
        value = value.strip().strip("'\"")
        if not indent:
            if value:
                out[key], section = value, None
            else:
                out[key] = section = {}
        elif section is None:
            raise ConfigError(f"{filename}:{lineno}: indented {key!r} is not inside a section")
        else:
            section[key] = value
    return out


def _camel(key: str) -> str:
    parts = re.split(r"[-_]", key)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def load_config(path: str | Path) -> Thresholds:
    """Thresholds from a `.pybuild-analyze.yaml` (or dive's `.dive-ci`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    data = parse_yaml_subset(text, filename=str(path))
    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError(f"{path}: 'rules' must be a section of rule: value lines")
    values: dict[str, str] = {}
    for key, value in rules.items():
        name = _camel(key)
        if name not in RULES:
            raise ConfigError(f"{path}: unknown rule {key!r}", hint=f"rules are {', '.join(RULES)}")
        if value.lower() != "disabled":
            values[name] = value
    return thresholds(values.get("lowestEfficiency"), values.get("highestWastedBytes"),
                      values.get("highestUserWastedPercent"), where=f"{path}: ")


def thresholds(lowest_efficiency: str | None, highest_wasted_bytes: str | None,
               highest_user_wasted_percent: str | None, *, where: str = "") -> Thresholds:
    """Thresholds from their text forms (flags or file values); None leaves a rule off."""
    return Thresholds(
        None if lowest_efficiency is None else parse_ratio(lowest_efficiency, where=where),
        None if highest_wasted_bytes is None else parse_bytes(highest_wasted_bytes, where=where),
        None if highest_user_wasted_percent is None else parse_ratio(highest_user_wasted_percent, where=where),
    )


def evaluate(report: ImageReport, limits: Thresholds) -> list[RuleResult]:
    """Judge dive's figures of `report` against `limits`, one result per rule."""
    rules = (  # (rule, threshold, value, value breaks the threshold, message)
        ("lowestEfficiency", limits.lowest_efficiency, report.dive_efficiency, lambda v, t: v < t,
         "image efficiency is too low (efficiency={v:.4f} < threshold={t})"),
        ("highestWastedBytes", limits.highest_wasted_bytes, report.dive_wasted_bytes, lambda v, t: v > t,
         "too many bytes wasted (wasted-bytes={v} > threshold={t})"),
        ("highestUserWastedPercent", limits.highest_user_wasted_percent, report.dive_user_wasted_percent,
         lambda v, t: v > t,
         "too many bytes wasted, relative to the user bytes added (user-wasted={v:.4f} > threshold={t})"),
    )
    out = []
    for rule, threshold, value, breaks, message in rules:
        if threshold is None:
            out.append(RuleResult(rule, "SKIP"))
        elif breaks(value, threshold):
            out.append(RuleResult(rule, "FAIL", message.format(v=value, t=threshold)))
        else:
            out.append(RuleResult(rule, "PASS"))
    return out


def render(results: list[RuleResult]) -> str:
    lines = ["Results:"]
    for r in results:
        lines.append(f"  {r.status}: {r.rule}" + (f": {r.message}" if r.message else ""))
    count = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    verdict = "FAIL" if count["FAIL"] else "PASS"
    lines.append(f"Result: {verdict} [Total:{len(results)}] [Passed:{count['PASS']}] [Failed:{count['FAIL']}] "
                 f"[Skipped:{count['SKIP']}]")
    return "\n".join(lines)
