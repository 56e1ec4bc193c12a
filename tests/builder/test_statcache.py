"""builder.cache.stat: the stat cache's file (written atomically, 0600, a rebuildable cache) and its keys."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cache import stat as statcache_mod
from builder.cache.stat import StatCache

ROOT = Path(__file__).resolve().parents[2]


def _old_file(path: Path) -> os.stat_result:
    path.write_text("content")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    return os.lstat(path)


def test_entries_survive_a_save_and_need_the_exact_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache_mod, "_RACY_NS", 0)
    st = _old_file(tmp_path / "f")
    cache = StatCache(tmp_path / "cache" / "root")
    cache.store("f", st, b"\x01" * 32)
    cache.save()
    path = tmp_path / "cache" / "root"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["root"]  # no temp file left behind
    again = StatCache(path)
    assert again.digest("f", st) == b"\x01" * 32 and not again.dirty
    os.utime(tmp_path / "f", (1_600_000_001, 1_600_000_001))
    assert again.digest("f", os.lstat(tmp_path / "f")) is None


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache_mod, "_RACY_NS", 0)
    (tmp_path / "blocked").write_text("a file where the cache directory would be")
    st = _old_file(tmp_path / "f")
    cache = StatCache(tmp_path / "blocked" / "root")
    cache.store("f", st, b"\x02" * 32)
    assert cache.dirty
    cache.save()  # no error
    assert cache.dirty  # still to write


def test_for_root_is_keyed_by_the_real_layer_paths(tmp_path: Path, store_root: Path) -> None:
    class Layers:
        def __init__(self, *paths: Path) -> None:
            self.layers = list(paths)

    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    one = StatCache.for_root(Layers(tmp_path / "a")).path
    assert one is not None and one.parent == store_root / "cache" / "statcache"
    assert StatCache.for_root(Layers(tmp_path / "link")).path == one
    assert StatCache.for_root(Layers(tmp_path / "a", tmp_path)).path != one


def test_the_stat_cache_needs_nothing_from_the_build() -> None:
    code = "import sys, builder.cache.stat; print(sorted(m for m in sys.modules if m.startswith('builder.build')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
