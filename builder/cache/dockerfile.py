"""Parsed Dockerfiles cached by content hash, so a rebuild never imports lark.

    load_dockerfile(data, filename, root) -> grammar.ast.Dockerfile

The pickle is keyed on the Dockerfile's bytes, its name (it appears in error locations) and the
grammar's source files (a changed grammar makes every entry miss). A torn or unreadable entry is a
miss; entries are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import grammar
from builder.errors import StoreError
from builder.util.atomic import atomic_file
from grammar import ast

_GRAMMAR_DIR = Path(grammar.__file__).parent


def _grammar_stamp() -> bytes:
    parts = []
    for name in sorted(os.listdir(_GRAMMAR_DIR)):
        if name.endswith((".py", ".lark")):
            st = os.stat(_GRAMMAR_DIR / name)
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts).encode()


def load_dockerfile(data: bytes, filename: str, root: str | os.PathLike[str]) -> ast.Dockerfile:
    """Parse `data` (checking for unknown instructions), or load the cached parse of it."""
    h = hashlib.sha256(_grammar_stamp() + b"\0" + filename.encode() + b"\0" + data).hexdigest()
    path = Path(root) / "cache" / "ast" / f"{h}.pickle"
    try:
        with open(path, "rb") as f:
            df = pickle.load(f)
        if isinstance(df, ast.Dockerfile):
            return df
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        pass
    df = grammar.parse(grammar.decode(data, filename=filename), filename=filename)
    grammar.check_instructions(df)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, durable=False) as f:
            pickle.dump(df, f, protocol=pickle.HIGHEST_PROTOCOL)
    except (OSError, StoreError):
        pass  # a cache we cannot write only costs time
    return df
