"""Pin a Dockerfile's base images: `FROM name:tag` -> `FROM name:tag@sha256:...`, formatting kept.

dockerfile-parse finds the FROM instructions and their line ranges; the image word is replaced
in the original text, so comments, continuations, flags and `AS name` stay as they were.
Stage names, `scratch`, references with `$VARIABLES` and already pinned references are left alone.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Callable

from builder.oci.reference import Reference, parse_reference

__all__ = ["Pin", "pin_dockerfile"]


@dataclass(frozen=True)
class Pin:
    """One FROM that was (or, with check-only, would be) pinned."""

    line: int        # 1-based line of the image word
    old: str
    new: str


def _image_word(value: str) -> str | None:
    words = [w for w in value.split() if w != "\\"]
    rest = [w for w in words if not w.startswith("--")]
    return rest[0] if rest else None


def pin_dockerfile(text: str, resolve: Callable[[Reference], str]) -> tuple[str, list[Pin]]:
    """The Dockerfile with every pinnable FROM pinned via `resolve(ref) -> digest`, and the pins made."""
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    lines = text.splitlines(keepends=True)
    stages: set[str] = set()
    pins: list[Pin] = []
    for ins in parser.structure:
        if ins["instruction"] != "FROM":
            continue
        word = _image_word(ins["value"])
        alias = re.search(r"\s[Aa][Ss]\s+(\S+)\s*$", ins["value"])
        if word is None:
            continue
        known_stage = word.lower() in stages
        if alias:
            stages.add(alias.group(1).lower())
        if known_stage or word.lower() == "scratch" or "$" in word or "@" in word:
            continue
        ref = parse_reference(word)
        new = f"{word}@{resolve(ref)}"
        start, end = ins["startline"], ins["endline"]
        for i in range(start, end + 1):
            pattern = re.compile(rf"(?<=\s){re.escape(word)}(?=\s|$)")
            replaced, n = pattern.subn(new, lines[i], count=1)
            if n:
                lines[i] = replaced
                pins.append(Pin(i + 1, word, new))
                break
    return "".join(lines), pins
