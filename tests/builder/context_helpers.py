"""Tiny directory trees for the context and copy tests."""

from __future__ import annotations

from pathlib import Path


def make_tree(root: Path, files: dict[str, str | None]) -> Path:
    """Files (text), directories (value None, name ending in /) and symlinks ("-> target")."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            path.mkdir(exist_ok=True)
        elif content is not None and content.startswith("-> "):
            path.symlink_to(content[3:])
        else:
            path.write_text(content or "")
    return root
