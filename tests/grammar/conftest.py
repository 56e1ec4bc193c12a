"""Fixtures of the grammar tests: the golden Dockerfile directories and expansion tables."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "fixtures" / "dockerfiles"
INVALID = ROOT / "fixtures" / "dockerfiles-invalid"
EXPAND = ROOT / "fixtures" / "expand"


def cases(base: Path) -> list[Path]:
    """Every case directory under `base` (one Dockerfile each), sorted."""
    return sorted(p for p in base.iterdir() if (p / "Dockerfile").is_file())


def all_fixture_dockerfiles() -> list[Path]:
    """Every Dockerfile anywhere under fixtures/ (golden, invalid, examples)."""
    return sorted(p for p in (ROOT / "fixtures").rglob("Dockerfile") if p.is_file())
