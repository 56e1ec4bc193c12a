"""Errors raised while reading a Dockerfile. Imports nothing from the project.

DockerfileError (ValueError)
 +-- DockerfileSyntaxError     Docker's parser rejects the text
 |    +-- InstructionError     an instruction's arguments are wrong (Docker rejects it when it
 |                             turns the parse tree into instructions, before building)
 +-- UnknownInstructionError
 +-- InvalidFlagError
 +-- ExpansionError
"""

from __future__ import annotations


class DockerfileError(ValueError):
    """A problem located in a Dockerfile: file, 1-based line and column, optional hint."""

    def __init__(
        self,
        message: str,
        *,
        filename: str = "Dockerfile",
        line: int = 0,
        column: int = 0,
        source_line: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        self.hint = hint

    def render(self) -> str:
        """`file:line:col: message`, then the source line with a caret, then the hint."""
        where = self.filename
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        out = [f"{where}: {self.message}" if where else self.message]
        if self.source_line is not None:
            out.append("  " + self.source_line.rstrip("\r\n"))
            out.append("  " + " " * max(self.column - 1, 0) + "^")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()

    def located(self, *, filename: str, line: int, column: int = 0,
                source_line: str | None = None) -> "DockerfileError":
        """A copy of this error (same class, message and hint) placed at a source location."""
        return type(self)(self.message, filename=filename, line=line, column=column,
                          source_line=source_line, hint=self.hint)

    def __reduce__(self):  # keep errors picklable (they cross process boundaries)
        return (_rebuild, (type(self), self.message, self.filename, self.line, self.column,
                           self.source_line, self.hint))


def _rebuild(cls: type, message: str, filename: str, line: int, column: int,
             source_line: str | None, hint: str | None) -> DockerfileError:
    return cls(message, filename=filename, line=line, column=column, source_line=source_line, hint=hint)


class DockerfileSyntaxError(DockerfileError):
    """The text is not a Dockerfile Docker would accept."""


class InstructionError(DockerfileSyntaxError):
    """Wrong arguments for an instruction: a missing destination, a bad stage name, ..."""


class UnknownInstructionError(DockerfileError):
    """An instruction keyword Docker does not know."""


class InvalidFlagError(DockerfileError):
    """An unknown flag, a missing value or a malformed value (duration, mode, ...)."""


class ExpansionError(DockerfileError):
    """A `$VAR` expansion failed: unterminated quote or brace, `${VAR:?msg}`, bad syntax."""

    word: str  # the word that failed, when the shell lexer raised it (unset otherwise; not pickled)
