"""Whether a process still exists: what temp entries named after their owner's pid are swept by."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while `pid` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
