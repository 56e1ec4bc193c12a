"""Errors raised by the builder and the image store. Imports nothing from the project.

BuildError
 +-- ContextError          the build context (missing file, escape attempt, unreadable)
 +-- StageError            stages: unknown --from / --target, cycles
 +-- StepError             a step failed (carries the Dockerfile location)
 +-- StoreError            the content-addressed store
 |    +-- DigestMismatchError
 +-- ImageFormatError      a malformed image, layout, archive or tar
 +-- InvalidReferenceError a malformed image reference
 +-- RegistryError         a registry answered with an error (status, codes, temporary)
UsageError                 a command line docker would refuse (not a BuildError: cli.py reports it)
"""

from __future__ import annotations


class BuildError(Exception):
    """Root of the builder's user-facing errors; `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return self.message + (f"\nhint: {self.hint}" if self.hint else "")


class ContextError(BuildError):
    """The build context cannot provide what a step asks for."""


class StageError(BuildError):
    """A stage reference or the stage graph is wrong."""


class StepError(BuildError):
    """A build step failed; the message names the Dockerfile location."""

    def __init__(
        self,
        message: str,
        *,
        filename: str = "Dockerfile",
        line: int = 0,
        column: int = 0,
        source_line: str | None = None,
        output_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.filename, self.line, self.column = filename, line, column
        self.source_line = source_line
        self.output_tail = output_tail

    def render(self) -> str:
        where = f"{self.filename}:{self.line}" + (f":{self.column}" if self.column else "")
        out = [f"{where}: {self.message}"]
        if self.source_line is not None:
            out.append("  " + self.source_line.rstrip("\r\n"))
            out.append("  " + " " * max(self.column - 1, 0) + "^")
        if self.output_tail:
            out.append(self.output_tail.rstrip("\n"))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class StoreError(BuildError):
    """The image store is missing something or cannot be written."""


class DigestMismatchError(StoreError):
    """Content did not hash to the digest it claimed; nothing was stored."""


class ImageFormatError(BuildError):
    """An image, layout, archive or layer tar is malformed or hostile."""


class InvalidReferenceError(BuildError):
    """An image reference cannot be parsed."""


class RegistryError(BuildError):
    """A registry request failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        temporary: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status, self.codes, self.temporary = status, codes, temporary


class UsageError(Exception):
    """A command line docker would refuse, with docker's wording and exit code: 125 for a flag
    (unknown, missing its value, a bad value), 1 for the wrong number of arguments."""

    def __init__(self, message: str, prog: str, code: int) -> None:
        super().__init__(message)
        self.message, self.prog, self.code = message, prog, code

    def render(self) -> str:
        return f"{self.message}\nSee '{self.prog} --help'."
