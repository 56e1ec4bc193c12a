"""The no-op memo's code stamp: the files that shape cache keys and configs, cheaply stat'ed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.cache import memo


def test_every_stamped_file_exists() -> None:
    """A file renamed by a restructuring must not silently drop out of the stamp (a missing one is skipped)."""
    missing = [p for p in memo._CODE if not os.path.isfile(p)]
    assert not missing, missing
    assert all(os.path.isdir(d) for d in memo._CODE_DIRS)


def test_a_changed_file_or_directory_module_changes_the_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # copies, so that no other test's build sees the checkout's code change
    files = [shutil.copy2(p, tmp_path / f"{i}-{os.path.basename(p)}") for i, p in enumerate(memo._CODE)]
    dirs = [Path(shutil.copytree(d, tmp_path / f"dir{i}", ignore=shutil.ignore_patterns("__pycache__")))
            for i, d in enumerate(memo._CODE_DIRS)]
    monkeypatch.setattr(memo, "_CODE", files)
    monkeypatch.setattr(memo, "_CODE_DIRS", tuple(dirs))
    before = memo._code_stamp()
    for path in (dirs[0] / "copy.py", dirs[1] / "dockerfile.lark", files[0]):
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        assert memo._code_stamp() != before, path
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert memo._code_stamp() == before
    (dirs[0] / "copy.py").write_text("# edited\n")
    assert memo._code_stamp() != before
