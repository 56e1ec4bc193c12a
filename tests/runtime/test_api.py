"""The runtime's public names: `__all__` lists them all, and the runtime imports nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import runtime

RUNTIME = Path(runtime.__file__).parent


def test_all_lists_every_public_name() -> None:
    public = {n for n in vars(runtime) if not n.startswith("_") and n[0].isupper()}
    assert public == set(runtime.__all__)
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None


def test_runtime_imports_nothing_from_builder_or_grammar() -> None:
    for path in RUNTIME.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("builder", "grammar")), f"{path.name} imports {name}"
