"""`analyze --ci` rules, the YAML subset, and the table and JSON renderings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.analyze.ci import (DEFAULTS, ConfigError, Thresholds, evaluate, load_config, parse_bytes, parse_ratio,
                                parse_yaml_subset, render, thresholds)
from builder.analyze.layers import analyze_layers
from builder.analyze.report import dumps, human_size, render_layer_files, render_table
from tests.builder.analyze_fixtures import sources
from tests.builder.test_analyze_layers import NGINX

REPORT = analyze_layers(sources(*NGINX, created_by=["FROM base", "COPY conf /etc", "RUN rm -rf /etc/nginx"]),
                        reference="demo:1")
# dive: efficiency 23000/28000 = 0.8214..., wasted 7000, user wasted 7000/15000 = 0.4666...


@pytest.mark.parametrize("text, value", [("123", 123), ("20MB", 20_000_000), ("20 mb", 20_000_000),
                                         ("1.5MiB", 1572864), ("2kB", 2000), ("1GiB", 2**30), ("20Mb", 20_000_000),
                                         ("3Ki", 3072), ("2M", 2_000_000), ("1PB", 10**15)])
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


def test_parse_ratio() -> None:
    assert parse_ratio("0.25") == 0.25 and parse_ratio("20%") == 0.2
    with pytest.raises(ConfigError, match="invalid ratio 'x'"):
        parse_ratio("x")
    with pytest.raises(ConfigError, match="invalid size '20 parsecs'"):
        parse_bytes("20 parsecs")
    for text in ("95", "-0.1", "120%", "nan"):  # dive: "outside allowed range (0-1)"
        with pytest.raises(ConfigError, match=f"ratio '{text}' is outside 0..1"):
            parse_ratio(text)


@pytest.mark.parametrize("limits, statuses", [
    (Thresholds(0.83, None, None), ["FAIL", "SKIP", "SKIP"]),
    (Thresholds(0.82, None, None), ["PASS", "SKIP", "SKIP"]),
    (Thresholds(None, 6999, None), ["SKIP", "FAIL", "SKIP"]),
    (Thresholds(None, 7000, None), ["SKIP", "PASS", "SKIP"]),
    (Thresholds(None, None, 0.46), ["SKIP", "SKIP", "FAIL"]),
    (Thresholds(None, None, 0.47), ["SKIP", "SKIP", "PASS"]),
])
def test_rules_judge_dives_figures(limits: Thresholds, statuses: list[str]) -> None:
    assert [r.status for r in evaluate(REPORT, limits)] == statuses


def test_render_counts() -> None:
    text = render(evaluate(REPORT, Thresholds(0.9, 10**6, None)))
    assert "FAIL: lowestEfficiency: image efficiency is too low (efficiency=0.8214 < threshold=0.9)" in text
    assert text.endswith("Result: FAIL [Total:3] [Passed:1] [Failed:1] [Skipped:1]")


def test_config_file_in_dives_format(tmp_path: Path) -> None:
    cfg = tmp_path / ".pybuild-analyze.yaml"
    cfg.write_text("# CI limits\nrules:\n  lowestEfficiency: 0.95   # strict\n  highestWastedBytes: 20MB\n"
                   "  highestUserWastedPercent: disabled\n")
    assert load_config(cfg) == Thresholds(0.95, 20_000_000, None)
    flags = thresholds(None, "1kB", "10%")
    assert load_config(cfg).merged(flags) == Thresholds(0.95, 1000, 0.1)
    assert load_config(cfg).merged(thresholds("off", None, None)) == Thresholds(None, 20_000_000, None)


def test_rules_a_file_leaves_out_take_dives_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / ".dive-ci"
    cfg.write_text("rules:\n  highestWastedBytes: 6kB\n")
    assert DEFAULTS == Thresholds(0.9, None, 0.1)
    assert load_config(cfg) == Thresholds(0.9, 6000, 0.1)  # dive checks all three on this image
    assert [r.status for r in evaluate(REPORT, load_config(cfg))] == ["FAIL", "FAIL", "FAIL"]
    cfg.write_text("rules:\n  lowestEfficiency: off\n  highestWastedBytes: false\n  highestUserWastedPercent:\n")
    assert load_config(cfg) == Thresholds(None, None, 0.1)  # an empty value (YAML null) keeps the default


def test_dives_own_sample_file_is_read(tmp_path: Path) -> None:
    # dive's .data/.dive-ci: a document marker, a plugins list and a plugin rule, which dive ignores
    cfg = tmp_path / ".dive-ci"
    cfg.write_text("---\nplugins:\n  - plugin1\n\nrules:\n  # a comment\n  lowestEfficiency: 0.95\n\n"
                   "  highestWastedBytes: 20Mb\n  highestUserWastedPercent: 0.5\n\n  plugin1/rule1: error\n")
    assert load_config(cfg) == Thresholds(0.95, 20_000_000, 0.5)


@pytest.mark.parametrize("text, error", [
    ("rules:\n  lowestEfficiency 0.9\n", r"f.yaml:2: expected 'key: value'"),
    ("  lowestEfficiency: 0.9\n", r"f.yaml:1: indented 'lowestEfficiency' is not inside a section"),
    ("rules:\n  bestEfficiency: 1\n", r"unknown rule 'bestEfficiency'"),
    ("rules:\n  highest-wasted-bytes: lots\n", r"invalid size 'lots'"),
    ("rules:\n  lowestEfficiency: 95\n", r"f.yaml: ratio '95' is outside 0..1"),
    ("rules:\n\tlowestEfficiency: 0.9\n", r"f.yaml:2: a tab in the indentation"),
    ("rules:\n  lowestEfficiency: 0.9\n  - item\n", r"f.yaml:3: expected 'key: value'"),
])
def test_config_errors_name_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    cfg = tmp_path / "f.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_config(cfg)


def test_yaml_subset_sections_and_scalars() -> None:
    assert parse_yaml_subset("a: 1\nb:\n  c: 'x'\n  d: \"y\"\n", filename="f") == {"a": "1", "b": {"c": "x", "d": "y"}}


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1500, 2_500_000, 3 * 10**9)] == [
        "0 B", "999 B", "1.0 kB", "1.5 kB", "2.5 MB", "3.0 GB"]


def test_table_shows_every_layer_and_both_families_of_figures() -> None:
    text = render_table(REPORT)
    lines = text.splitlines()
    assert lines[0] == "Image: demo:1  (3 layers)"
    row1 = next(l for l in lines if l.strip().startswith("1 "))
    assert row1.split()[-3:] == ["COPY", "conf", "/etc"] and "15.0 kB" in row1 and "5.0 kB" in row1
    assert "Efficiency (dive):            82.14 %" in text
    assert "Wasted bytes (dive):          7.0 kB (7000 bytes;" in text
    assert "Wasted bytes (corrected):     10.0 kB (10000 bytes" in text
    assert "A user could save:            5.0 kB (5000 bytes, 33.33 %" in text
    assert "10.0 kB  layer 1   /etc/athing" in text
    assert "     7.0 kB  2 copies (layers 0, 1)  /etc/nginx/nginx.conf" in text


def test_layer_file_lists() -> None:
    text = render_layer_files(REPORT, top=1)
    assert "Layer 0: FROM base\n  added (2):\n        3.0 kB  /etc/nginx/public\n    ... 1 more" in text
    assert "Layer 2: RUN rm -rf /etc/nginx\n  removed (1):\n        8.0 kB  /etc/nginx" in text


def test_json_round_trips_every_number() -> None:
    data = json.loads(dumps(REPORT))
    assert data["version"] == 1 and data["reference"] == "demo:1"
    assert data["dive_efficiency"] == 23000 / 28000 and data["dive_wasted_bytes"] == 7000
    assert data["wasted_bytes"] == 10000 and data["user_wasted_bytes"] == 5000
    assert [l["wasted_bytes"] for l in data["layers"]] == [5000, 5000, 0]
    assert data["layers"][1]["modified"] == [{"path": "/etc/nginx/nginx.conf", "size": 5000, "layer": 1}]
    assert data["inefficiencies"][0]["path"] == "/etc/nginx/nginx.conf"
    assert json.loads(dumps(REPORT, files=False))["layers"][1]["added"] == 1
