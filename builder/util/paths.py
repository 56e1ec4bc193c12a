"""Where the store lives: one definition for every command (cheap to import: no pathlib, for the
replay of a no-op rebuild, which runs before anything else is imported)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from pathlib import Path


def root_dir() -> str:
    """$PYBUILD_ROOT, else /var/lib/pybuild for root, else $XDG_DATA_HOME/pybuild (~/.local/share/pybuild)."""
    env = os.environ.get("PYBUILD_ROOT")
    if env:
        return os.path.abspath(env)  # a relative root would reach mount options and child processes
    if os.geteuid() == 0:
        return "/var/lib/pybuild"
    return user_root_dir()


def user_root_dir() -> str:
    """An ordinary user's store (also root's when rootless): $XDG_DATA_HOME/pybuild (~/.local/share/pybuild)."""
    return os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share"),
                        "pybuild")


def default_root() -> Path:
    """`root_dir()` as a Path."""
    from pathlib import Path

    return Path(root_dir())


def user_root() -> Path:
    """`user_root_dir()` as a Path."""
    from pathlib import Path

    return Path(user_root_dir())
