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

from builder.errors import BuildError, StepError
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


def pin_dockerfile(text: str, resolve: Callable[[Reference], str], filename: str = "Dockerfile",
                   on_error: Callable[[StepError], None] | None = None) -> tuple[str, list[Pin]]:
    """The Dockerfile with every pinnable FROM pinned via `resolve(ref) -> digest`, and the pins made.

    A malformed reference or a registry error is a `StepError` at that FROM's line: raised, or,
    with `on_error`, handed to it and that FROM left as it is while the others are pinned; a FROM
    whose image uses a variable cannot be pinned here and is reported to `on_error` too.
    Line endings (LF or CRLF) are kept as they are in `text`.
    """
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
        if known_stage or word.lower() == "scratch" or "@" in word:
            continue
        pattern = re.compile(rf"(?<=\s){re.escape(word)}(?=\s|$)")
        start, end = ins["startline"], ins["endline"]
        at = next(((i, m) for i in range(start, end + 1) if (m := pattern.search(lines[i]))), None)
        if at is None:
            continue
        i, match = at
        if "$" in word:
            if on_error is not None:
                on_error(StepError(f"{word} is not pinned: it names its image with a variable, which pin cannot "
                                   "resolve", filename=filename, line=i + 1, column=match.start() + 1,
                                   source_line=lines[i].rstrip("\r\n"),
                                   hint="pin the value instead (ARG ...=name:tag@sha256:...), or write the image "
                                        "name out"))
            continue
        try:
            new = f"{word}@{resolve(parse_reference(word))}"
        except BuildError as exc:
            error = StepError(exc.message, filename=filename, line=i + 1, column=match.start() + 1,
                              source_line=lines[i].rstrip("\r\n"), hint=exc.hint)
            if on_error is None:
                raise error from None
            on_error(error)
            continue
        lines[i] = lines[i][:match.start()] + new + lines[i][match.end():]
        pins.append(Pin(i + 1, word, new))
    return "".join(lines), pins
