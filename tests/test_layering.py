"""The package layering, checked on the source: imports point one way and form no cycle.

Every `import` and `from ... import` is read from the AST, wherever it stands (module level, inside a
function, under `if TYPE_CHECKING:`), as go-containerregistry's depcheck test does for its packages.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lower numbers are lower layers. A module may import its own package and any lower layer; packages of
# the same rank (registry and store; analyze and containers) never import each other.
LAYERS: dict[str, int] = {
    "builder.errors": 0,
    "builder.util": 1,
    "builder.oci": 2,
    "builder.registry": 3,
    "builder.store": 3,
    "builder.transfer": 4,
    "builder.cache": 5,
    "builder.build": 6,
    "builder.analyze": 7,
    "builder.containers": 7,
    "builder.serve": 8,
    "builder.commands": 9,
    "builder.cli": 10,
    "builder.__main__": 11,

}
SELF_CONTAINED = ("grammar", "runtime")  # import nothing from the project


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("builder", "grammar", "runtime") for p in (ROOT / top).rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, every import statement counted."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(module: str) -> tuple[str, int]:
    if module == "builder":
        return "builder", LAYERS["builder.__main__"]
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_grammar_and_runtime_import_nothing_from_the_project() -> None:
    bad = [f"{m} imports {t}" for m, targets in graph().items() if m.split(".")[0] in SELF_CONTAINED
           for t in targets if t.split(".")[0] != m.split(".")[0]]
    assert not bad, "\n".join(bad)


def test_builder_imports_point_down() -> None:
    bad = []
    for module, targets in graph().items():
        if not module.startswith("builder"):
            continue
        package, rank = layer_of(module)
        for target in targets:
            if not target.startswith("builder"):
                continue
            target_package, target_rank = layer_of(target)
            if target_package != package and target_rank >= rank:
                bad.append(f"{module} ({package}, layer {rank}) imports {target} ({target_package}, layer {target_rank})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if state[target] == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif state[target] == 0:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if state[module] == 0:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_upward_and_cyclic_imports(tmp_path: Path) -> None:
    """The checks above can fail: an upward import and a cycle written to a scratch tree are found."""
    known = {"builder.oci.model": tmp_path / "model.py", "builder.store.blobs": tmp_path / "blobs.py"}
    known["builder.oci.model"].write_text("def f():\n    from builder.store import blobs\n")
    known["builder.store.blobs"].write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                            "    from builder.oci.model import X\n")
    up = imports_of("builder.oci.model", known["builder.oci.model"], known)
    back = imports_of("builder.store.blobs", known["builder.store.blobs"], known)
    assert up == {"builder.store.blobs"} and back == {"builder.oci.model"}
    assert layer_of("builder.oci.model")[1] < layer_of("builder.store.blobs")[1]
