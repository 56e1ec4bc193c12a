"""The typed Dockerfile AST: frozen, slotted, picklable dataclasses. Imports nothing heavy.

Every value is *raw*: nothing is expanded (`$VAR` stays as written) and quotes are kept
exactly as Docker's parser keeps them; the builder expands with `grammar.expand`.

Field names (stable):

    SourceRange(start_line, start_col, end_line, end_col)   1-based lines and columns;
        end_col is the column just past the last character on end_line. A range covers
        continuation lines and heredoc bodies.
    Flag(name, value, range)         `--name=value` -> ("name", "value"); `--link` -> value None
    ShellForm(text)                  continuation lines joined the way Docker joins them
    ExecForm(args)                   decoded JSON array of strings
    Heredoc(name, content, expand, chomp, fd)   content is raw (tabs kept even for `<<-`);
                                     `body` applies the `<<-` tab stripping
    Instruction (base):  range, raw, flags, args
        raw   the instruction's source text: its lines joined with "\\n" (heredoc bodies included)
        args  the raw argument words exactly as Docker's parser gives them (for ENV/LABEL the
              flattened key/value list; for ONBUILD empty); `keyword` is the lowercase keyword
    From(image, alias, platform)     alias lowercased as Docker does; platform from --platform
    Run(command, heredocs)           command: ShellForm | ExecForm | None
    Cmd(command), Entrypoint(command), Shell(command)
    Env(pairs), Label(pairs)         tuple of (key, value)
    Arg(pairs)                       tuple of (name, default or None)
    Copy(sources, dest, json, heredocs), Add(sources, dest, json, heredocs)
    Expose(ports), Volume(paths, json)
    User(user), Workdir(path), Stopsignal(signal), Maintainer(name)
    Onbuild(trigger)                 trigger: the nested Instruction
    Healthcheck(kind, command)       kind "CMD" or "NONE" (uppercased); command for CMD
    Unknown(word, text)              keyword as written, rest of the line
    Stage(index, name, base, instructions)    base: the From; instructions after it
    Dockerfile(filename, directives, escape, meta_args, stages, instructions)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator, Union


@dataclass(frozen=True, slots=True)
class SourceRange:
    """Where a node is in the source: 1-based lines and columns, end column exclusive."""

    start_line: int
    start_col: int
    end_line: int
    end_col: int


@dataclass(frozen=True, slots=True)
class Flag:
    """A builder flag such as `--mount=type=cache,target=/x`; value None when there is no `=`."""

    name: str
    value: str | None
    range: SourceRange

    @property
    def raw(self) -> str:
        """The flag as Docker gives it: `--name=value` (quotes removed) or `--name`."""
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class ShellForm:
    """A command in shell form, run by the SHELL (default `/bin/sh -c`)."""

    text: str


@dataclass(frozen=True, slots=True)
class ExecForm:
    """A command in exec (JSON array) form."""

    args: tuple[str, ...]


Command = Union[ShellForm, ExecForm]


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A here-document attached to RUN, COPY or ADD."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0

    @property
    def body(self) -> str:
        """The content with leading tabs stripped from each line when opened with `<<-`."""
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(keepends=True))


@dataclass(frozen=True, slots=True)
class Instruction:
    """Base of every instruction: its range, source text, flags and raw argument words."""

    KEYWORD: ClassVar[str] = ""

    range: SourceRange
    raw: str
    flags: tuple[Flag, ...]
    args: tuple[str, ...]

    @property
    def keyword(self) -> str:
        """The lowercase keyword (`run`, `copy`, ...)."""
        return self.KEYWORD

    @property
    def line(self) -> int:
        return self.range.start_line

    def flag(self, name: str) -> str | None:
        """The value of the last `--name` flag (`"true"` for a bare boolean flag), or None."""
        for f in reversed(self.flags):
            if f.name == name:
                return "true" if f.value is None else f.value
        return None

    def flag_values(self, name: str) -> tuple[str, ...]:
        """Every value of a repeatable flag (`--mount`, `--exclude`), in order."""
        return tuple(f.value or "" for f in self.flags if f.name == name)


@dataclass(frozen=True, slots=True)
class From(Instruction):
    KEYWORD: ClassVar[str] = "from"
    image: str
    alias: str | None
    platform: str | None


@dataclass(frozen=True, slots=True)
class Run(Instruction):
    KEYWORD: ClassVar[str] = "run"
    command: Command | None
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True)
class Cmd(Instruction):
    KEYWORD: ClassVar[str] = "cmd"
    command: Command | None


@dataclass(frozen=True, slots=True)
class Entrypoint(Instruction):
    KEYWORD: ClassVar[str] = "entrypoint"
    command: Command | None


@dataclass(frozen=True, slots=True)
class Shell(Instruction):
    KEYWORD: ClassVar[str] = "shell"
    command: Command | None


@dataclass(frozen=True, slots=True)
class Env(Instruction):
    KEYWORD: ClassVar[str] = "env"
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Label(Instruction):
    KEYWORD: ClassVar[str] = "label"
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Arg(Instruction):
    KEYWORD: ClassVar[str] = "arg"
    pairs: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Copy(Instruction):
    KEYWORD: ClassVar[str] = "copy"
    sources: tuple[str, ...]
    dest: str
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True)
class Add(Instruction):
    KEYWORD: ClassVar[str] = "add"
    sources: tuple[str, ...]
    dest: str
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True)
class Expose(Instruction):
    KEYWORD: ClassVar[str] = "expose"
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Volume(Instruction):
    KEYWORD: ClassVar[str] = "volume"
    paths: tuple[str, ...]
    json: bool = False


@dataclass(frozen=True, slots=True)
class User(Instruction):
    KEYWORD: ClassVar[str] = "user"
    user: str


@dataclass(frozen=True, slots=True)
class Workdir(Instruction):
    KEYWORD: ClassVar[str] = "workdir"
    path: str


@dataclass(frozen=True, slots=True)
class Stopsignal(Instruction):
    KEYWORD: ClassVar[str] = "stopsignal"
    signal: str


@dataclass(frozen=True, slots=True)
class Maintainer(Instruction):
    KEYWORD: ClassVar[str] = "maintainer"
    name: str


@dataclass(frozen=True, slots=True)
class Healthcheck(Instruction):
    KEYWORD: ClassVar[str] = "healthcheck"
    kind: str
    command: Command | None


@dataclass(frozen=True, slots=True)
class Onbuild(Instruction):
    KEYWORD: ClassVar[str] = "onbuild"
    trigger: Instruction


@dataclass(frozen=True, slots=True)
class Unknown(Instruction):
    """An instruction Docker does not know; kept so that tools can see it."""

    word: str
    text: str

    @property
    def keyword(self) -> str:
        return self.word.lower()


INSTRUCTION_TYPES: dict[str, type[Instruction]] = {
    cls.KEYWORD: cls
    for cls in (From, Run, Cmd, Entrypoint, Shell, Env, Label, Arg, Copy, Add, Expose, Volume,
                User, Workdir, Stopsignal, Maintainer, Healthcheck, Onbuild)
}


@dataclass(frozen=True, slots=True)
class Stage:
    """One build stage: its FROM and the instructions that follow it."""

    index: int
    name: str | None
    base: From
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """A parsed Dockerfile. `instructions` holds every instruction in order, meta ARGs included."""

    filename: str
    directives: tuple[tuple[str, str], ...]
    escape: str
    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    instructions: tuple[Instruction, ...]

    def directive(self, name: str) -> str | None:
        """The value of a parser directive (`syntax`, `escape`, `check`), or None."""
        for key, value in self.directives:
            if key == name:
                return value
        return None

    def walk(self) -> Iterator[Instruction]:
        """Every instruction, ONBUILD triggers included, in source order."""
        for inst in self.instructions:
            yield inst
            if isinstance(inst, Onbuild):
                yield inst.trigger
