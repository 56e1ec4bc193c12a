"""`cache ls/du` and prune policies on cache entries and build records written here."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from unittest import mock

from builder.build import records
from builder.analyze.cache import cache_rows, prune_cache, render_du, render_ls
from builder.cache.policy import PolicyError, parse_duration
from builder.cache.keys import BuildCache, CacheKey
from tests.conftest import pybuild

HOUR = 3600.0


def entry(root: Path, name: str, size: int, digest: str, kind: str = "RUN", duration: float = 1.0) -> str:
    key = CacheKey.make(op={"kind": kind, "argv": [name]})
    layer = {"diff_id": digest, "digest": digest, "size": size, "media_type": "x"} if size else None
    with mock.patch("builder.cache.keys.time.time", return_value=time.time() - 20 * HOUR):  # created 20 h ago
        BuildCache(root).put(key, layer, duration=duration)
    return key.digest


def use(root: Path, n: int, keys: list[str], started: float, hit: bool = True) -> None:
    steps = [records.StepRecord(id=i, stage="0", stage_index=0, index=i, count=len(keys), instruction=f"RUN step{i}",
                                line=i, end_line=i, kind="RUN", key=k, cache="hit" if hit else "miss")
             for i, k in enumerate(keys, 1)]
    records.write(root, records.BuildRecord(id=f"20261123T1700{n:02d}-0000000{n}", started=started, dockerfile="/D",
                                            dockerfile_digest="", context="/", steps=steps))


@pytest.fixture
def cache(store_root: Path) -> dict[str, str]:
    """Four entries made 20 h ago: a (100 B), b (200 B), c (sharing a's layer), d (no layer).
    a was last used 2 h ago, b 10 h ago, c and d never."""
    keys = {"a": entry(store_root, "a", 100, "sha256:" + "a" * 64, duration=2.0),
            "b": entry(store_root, "b", 200, "sha256:" + "b" * 64, kind="COPY"),
            "c": entry(store_root, "c", 100, "sha256:" + "a" * 64),
            "d": entry(store_root, "d", 0, "")}
    now = time.time()
    use(store_root, 1, [keys["b"]], now - 10 * HOUR)
    use(store_root, 2, [keys["a"]], now - 2 * HOUR)
    use(store_root, 3, [keys["a"]], now - 2 * HOUR)
    return keys


def test_rows_count_hits_and_last_use(store_root: Path, cache: dict[str, str]) -> None:
    rows = {r.key: r for r in cache_rows(store_root)}
    assert rows[cache["a"]].hits == 2 and rows[cache["b"]].hits == 1 and rows[cache["d"]].hits == 0
    assert rows[cache["a"]].kind == "RUN" and rows[cache["b"]].kind == "COPY"
    assert rows[cache["a"]].instruction == "RUN step1"
    text = render_du(list(rows.values()))
    assert text.splitlines()[-1].split()[:2] == ["total", "4"] and "(300 bytes)" in text  # a's layer counted once
    assert "RUN step1" in render_ls(list(rows.values()))


def test_keep_duration_uses_last_use(store_root: Path, cache: dict[str, str]) -> None:
    result = prune_cache(store_root, keep_duration="4h", now=time.time() + 5 * HOUR)
    assert {r.key for r in result.removed} == {cache["a"], cache["b"], cache["c"], cache["d"]}
    assert result.freed_bytes == 300 and result.kept == 0


def test_keep_duration_keeps_recent(store_root: Path, cache: dict[str, str]) -> None:
    result = prune_cache(store_root, keep_duration="5h")
    assert {r.key for r in result.removed} == {cache["b"], cache["c"], cache["d"]}
    assert result.freed_bytes == 200  # c's layer is a's too, and a stays
    assert {r.key for r in cache_rows(store_root)} == {cache["a"]}


def test_keep_storage_removes_least_recently_used(store_root: Path, cache: dict[str, str]) -> None:
    result = prune_cache(store_root, keep_storage="150")
    # oldest use first: c and d (never), then b; 300 -> 100 bytes once b goes (a and c share a layer)
    assert {r.key for r in result.removed} == {cache["b"], cache["c"], cache["d"]}
    assert result.freed_bytes == 200 and "least recently used" in result.render()
    assert [r.key for r in cache_rows(store_root)] == [cache["a"]]


def test_filters(store_root: Path, cache: dict[str, str]) -> None:
    result = prune_cache(store_root, filters=["kind=copy"])
    assert [r.key for r in result.removed] == [cache["b"]]
    result = prune_cache(store_root, filters=["kind=run", "unused-for=3h"])  # a: 2 h ago; c, d: never used
    assert {r.key for r in result.removed} == {cache["c"], cache["d"]}
    assert result.freed_bytes == 0  # a still holds c's layer
    result = prune_cache(store_root, filters=["kind=run"])
    assert [r.key for r in result.removed] == [cache["a"]] and result.freed_bytes == 100
    with pytest.raises(PolicyError, match="invalid --filter 'colour=red'"):
        prune_cache(store_root, filters=["colour=red"])


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "24h", "7d", "1h30m")] == [90, 90, 1800, 86400, 604800,
                                                                                          5400]
    with pytest.raises(PolicyError):
        parse_duration("soon")


def test_cli(store_root: Path, cache: dict[str, str]) -> None:
    rows = json.loads(pybuild("cache", "ls", "--json").stdout)
    assert len(rows) == 4
    assert json.loads(pybuild("cache", "du", "--json").stdout)["bytes"] == 300
    out = pybuild("prune", "-f", "--keep-duration", "5h").stdout
    assert "Build cache: removed 3 entries, kept 1; released 200 B" in out
    bad = pybuild("prune", "-f", "--keep-storage", "lots", check=False)
    assert bad.returncode == 1 and "invalid size 'lots'" in bad.stderr and "Traceback" not in bad.stderr
