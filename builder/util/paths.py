"""Where the store lives: one definition for every command (cheap to import)."""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """$PYBUILD_ROOT, else /var/lib/pybuild for root, else $XDG_DATA_HOME/pybuild (~/.local/share/pybuild)."""
    env = os.environ.get("PYBUILD_ROOT")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/pybuild")
    return user_root()


def user_root() -> Path:
    """An ordinary user's store (also root's when rootless): $XDG_DATA_HOME/pybuild (~/.local/share/pybuild)."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "pybuild"
