"""`analyze --ci`: dive's three CI rules, from flags or a `.pybuild-analyze.yaml`.

The file uses dive's `.dive-ci` keys and semantics, so an existing dive configuration works as is:

    rules:
      lowestEfficiency: 0.95          # fail if efficiency < 0.95
      highestWastedBytes: 20MB        # fail if dive's wasted bytes > 20,000,000 (MiB = 2**20)
      highestUserWastedPercent: 0.20  # fail if wasted / user bytes > 0.20 ("20%" works too)

As in dive, a rule the file (or a flag) does not set, or sets to an empty value, takes dive's
default (lowestEfficiency 0.9, highestWastedBytes disabled, highestUserWastedPercent 0.1);
`disabled` turns a rule off (and, as in dive's current source though not its 0.13.1 release,
`off` and `false` too, and an empty flag); ratios must lie in 0..1; plugin rules (`name/rule`) and other
top-level sections are ignored. Unlike dive, a flag given on the command line wins over the
file. Only a small YAML subset is read (`key: value` lines, one level of nesting, `- item`
lists, `#` comments), so no YAML library is needed. The rules judge dive's figures, so a verdict
matches what `dive --ci` says about the same image.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.analyze.layers import ImageReport
from builder.errors import BuildError

CONFIG_NAME = ".pybuild-analyze.yaml"
RULES = ("lowestEfficiency", "highestWastedBytes", "highestUserWastedPercent")
_UNITS = {"": 1, "b": 1, **{p + s: 1000 ** (i + 1) for i, p in enumerate("kmgtpe") for s in ("", "b")},
          **{p + s: 1024 ** (i + 1) for i, p in enumerate("kmgtpe") for s in ("i", "ib")}}  # as go-humanize
OFF = ("", "disabled", "off", "false")  # dive's words for a rule that is off


class ConfigError(BuildError):
    """A threshold or the analyze configuration file is malformed."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """None means the rule is off."""

    lowest_efficiency: float | None = None
    highest_wasted_bytes: int | None = None
    highest_user_wasted_percent: float | None = None

    def merged(self, given: dict[str, Any]) -> "Thresholds":
        """These rules with those in `given` (field name -> value, None = off) replaced."""
        return dataclasses.replace(self, **given)


DEFAULTS = Thresholds(0.9, None, 0.1)  # dive's, for a rule neither the file nor a flag sets


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
    """'0.2' -> 0.2, '20%' -> 0.2; a ratio outside 0..1 is an error (as in dive)."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ConfigError(f"{where}invalid ratio {text!r}", hint="use e.g. 0.95 or 95%") from None
    if not 0.0 <= value <= 1.0:  # also NaN
        raise ConfigError(f"{where}ratio {text!r} is outside 0..1", hint="use e.g. 0.95 or 95%")
    return value


def parse_yaml_subset(text: str, *, filename: str) -> dict[str, dict[str, str] | list[str] | str]:
    """`key: value` lines with one level of indented nesting (`key: value` or `- item` lines);
    errors name file and line."""
    out: dict[str, dict[str, str] | list[str] | str] = {}
    section: dict[str, str] | list[str] | None = None
    name = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"\s+#.*$|^\s*#.*$", "", raw).rstrip()
        if not line.strip() or line in ("---", "..."):  # blank, comment, document markers
            continue
        if re.match(r" *\t", line):
            raise ConfigError(f"{filename}:{lineno}: a tab in the indentation (YAML indents with spaces)")
        item = re.fullmatch(r"\s+-\s*(.*)", line)
        if item and section is not None and not section:
            section = out[name] = section if isinstance(section, list) else []
        if item and isinstance(section, list):
            section.append(item.group(1).strip().strip("'\""))
            continue
        m = re.fullmatch(r"(\s*)([A-Za-z0-9_./-]+)\s*:(?:\s+(.*))?", line)
        if not m:
            raise ConfigError(f"{filename}:{lineno}: expected 'key: value', got {raw.strip()!r}")
        indent, key, value = m.groups()
        value = (value or "").strip().strip("'\"")
        if not indent:
            if value:
                out[key], section = value, None
            else:
                section = {}
                name, out[key] = key, section
        elif not isinstance(section, dict):
            raise ConfigError(f"{filename}:{lineno}: indented {key!r} is not inside a section")
        else:
            section[key] = value
    return out


def _camel(key: str) -> str:
    parts = re.split(r"[-_]", key)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def load_config(path: str | Path) -> Thresholds:
    """The rules of a `.pybuild-analyze.yaml` (or dive's `.dive-ci`), over dive's defaults."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    data = parse_yaml_subset(text, filename=str(path))
    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError(f"{path}: 'rules' must be a section of rule: value lines")
    values: dict[str, str] = {}
    for key, value in rules.items():
        name = _camel(key)
        if "/" in key or not value:
            continue  # a dive plugin's rule; an empty value (YAML null) leaves dive's default
        if name not in RULES:
            raise ConfigError(f"{path}: unknown rule {key!r}", hint=f"rules are {', '.join(RULES)}")
        values[name] = value
    return DEFAULTS.merged(thresholds(values.get("lowestEfficiency"), values.get("highestWastedBytes"),
                                      values.get("highestUserWastedPercent"), where=f"{path}: "))


def thresholds(lowest_efficiency: str | None, highest_wasted_bytes: str | None,
               highest_user_wasted_percent: str | None, *, where: str = "") -> dict[str, float | int | None]:
    """The rules given in text form (flags or file values) as `Thresholds` field -> value; a rule
    given as `disabled` (or off, false, empty) maps to None, one not given (None) is left out."""
    given = {}
    for field, text, parse in (("lowest_efficiency", lowest_efficiency, parse_ratio),
                               ("highest_wasted_bytes", highest_wasted_bytes, parse_bytes),
                               ("highest_user_wasted_percent", highest_user_wasted_percent, parse_ratio)):
        if text is not None:
            given[field] = None if text.strip().lower() in OFF else parse(text, where=where)
    return given


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
