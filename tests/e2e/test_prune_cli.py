"""`pybuild prune` says what it removes and asks first (as docker), `--dry-run` removes nothing, and
a build-cache policy alone never removes an image."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import pybuild


def _dangling(store: dict[str, str], tmp_path: Path, n: int) -> str:
    ctx = tmp_path / f"ctx{n}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN echo {n} > /n\n")
    return pybuild("build", "-q", str(ctx), env=store).stdout.strip()  # no tag: dangling


def test_prune_asks_and_no_answer_removes_nothing(store: dict[str, str], tmp_path: Path) -> None:
    image = _dangling(store, tmp_path, 1)
    proc = pybuild("prune", env=store, input=b"")
    assert proc.returncode == 0
    assert proc.stdout.startswith("WARNING! This will remove:\n  - dangling images")
    assert "Are you sure you want to continue? [y/N]" in proc.stdout and "Nothing removed" in proc.stderr
    assert image[7:19] in pybuild("images", "-q", env=store).stdout
    dry = pybuild("prune", "--dry-run", env=store).stdout
    assert f"Would delete: {image}" in dry and "nothing was removed" in dry
    assert image[7:19] in pybuild("images", "-q", env=store).stdout
    yes = pybuild("prune", env=store, input=b"y\n").stdout
    assert f"Deleted: {image}" in yes
    assert image[7:19] not in pybuild("images", "-q", env=store).stdout


def test_a_cache_policy_never_removes_images_unless_all(store: dict[str, str], tmp_path: Path) -> None:
    image = _dangling(store, tmp_path, 2)
    out = pybuild("prune", "-f", "--filter", "kind=RUN", "--keep-storage", "500KB", env=store).stdout
    assert "Deleted: sha256" not in out and "Removed 0 images" in out
    assert image[7:19] in pybuild("images", "-q", env=store).stdout
    question = pybuild("prune", "--filter", "kind=RUN", env=store, input=b"n\n").stdout
    assert "build cache entries selected by --filter kind=RUN" in question and "dangling images" not in question
    out = pybuild("prune", "-f", "--all", "--filter", "kind=RUN", env=store).stdout
    assert f"Deleted: {image}" in out
