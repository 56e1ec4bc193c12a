"""The AST classes state their defaults twice: `_defaults` (what `__init__` uses at run time) and the
`if TYPE_CHECKING:` annotations mypy reads. This keeps the two equal."""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest

import grammar.ast
import grammar.flags


def _classes_with_defaults() -> list[tuple[str, type]]:
    return [(f"{module.__name__}.{name}", cls) for module in (grammar.ast, grammar.flags)
            for name, cls in vars(module).items()
            if isinstance(cls, type) and cls.__module__ == module.__name__ and "_defaults" in vars(cls)]


def _type_checking_defaults(cls: type) -> dict[str, Any]:
    """The `name: T = value` assignments under the class body's `if TYPE_CHECKING:`."""
    body = ast.parse(inspect.getsource(cls)).body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, Any] = {}
    for stmt in body.body:
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING":
            for item in stmt.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    found[item.target.id] = ast.literal_eval(item.value)
    return found


def test_there_are_classes_to_check() -> None:
    assert len(_classes_with_defaults()) >= 5


@pytest.mark.parametrize("name, cls", _classes_with_defaults(), ids=lambda v: v if isinstance(v, str) else "")
def test_type_checking_defaults_equal_the_run_time_defaults(name: str, cls: type) -> None:
    declared = vars(cls)["_defaults"]
    assert _type_checking_defaults(cls) == declared, name
