"""The typed Dockerfile AST: immutable, slotted, picklable classes. Imports nothing heavy.

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

from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Union, dataclass_transform


class FrozenError(AttributeError):
    """Raised when code tries to change an AST node."""


@dataclass_transform(eq_default=True, frozen_default=True)
class Node:
    """Base of the AST classes: slotted, immutable, compared and hashed by value, picklable.

    Each subclass lists its fields in `__slots__` (a base's fields come first) and optional
    defaults in `_defaults`; `__init__` is generated once per class. (Plain classes rather than
    dataclasses: `import grammar.ast` stays cheap, it is on the builder's no-op rebuild path.)

    For type checkers the classes are frozen dataclasses (`dataclass_transform`, which at run
    time only marks the class): the field annotations, in `__slots__` order, give `__init__`'s
    parameters. A field with a default also gets it in an `if TYPE_CHECKING:` branch, since a
    class value next to the slot of the same name is an error at run time; keep the two equal.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    if TYPE_CHECKING:
        @staticmethod
        def _values(node: Node, /) -> tuple[Any, ...]:
            """The field values in `_fields` order (an `attrgetter`, set per class)."""
            ...

    def __init_subclass__(cls) -> None:
        fields: list[str] = []
        for klass in reversed(cls.__mro__):
            fields.extend(klass.__dict__.get("__slots__", ()))
        cls._fields = tuple(fields)
        # setattr: a type checker gets __match_args__ and __init__ from dataclass_transform and
        # _values from its declaration above
        setattr(cls, "__match_args__", cls._fields)  # noqa: B010
        get = attrgetter(*fields)
        setattr(cls, "_values", staticmethod(get if len(fields) > 1 else lambda obj: (get(obj),)))  # noqa: B010
        params = ", ".join(f"{f}=_d_{f}" if f in cls._defaults else f for f in fields)
        body = "".join(f"    _set_{f}(self, {f})\n" for f in fields)
        namespace: dict[str, Any] = {f"_set_{f}": getattr(cls, f).__set__ for f in fields}
        namespace.update({f"_d_{k}": v for k, v in cls._defaults.items()})
        exec(f"def __init__(self, {params}):\n{body}", namespace)  # noqa: S102 - fixed source
        setattr(cls, "__init__", namespace["__init__"])  # noqa: B010

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenError(f"{type(self).__name__} is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"{type(self).__name__} is immutable (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values(self) == other._values(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values(self)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple:
        return type(self), self._values(self)


class SourceRange(Node):
    """Where a node is in the source: 1-based lines and columns, end column exclusive."""

    __slots__ = ("start_line", "start_col", "end_line", "end_col")
    start_line: int
    start_col: int
    end_line: int
    end_col: int


class Flag(Node):
    """A builder flag such as `--mount=type=cache,target=/x`; value None when there is no `=`."""

    __slots__ = ("name", "value", "range")
    name: str
    value: str | None
    range: SourceRange

    @property
    def raw(self) -> str:
        """The flag as Docker gives it: `--name=value` (quotes removed) or `--name`."""
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


class ShellForm(Node):
    """A command in shell form, run by the SHELL (default `/bin/sh -c`)."""

    __slots__ = ("text",)
    text: str


class ExecForm(Node):
    """A command in exec (JSON array) form."""

    __slots__ = ("args",)
    args: tuple[str, ...]


Command = Union[ShellForm, ExecForm]


class Heredoc(Node):
    """A here-document attached to RUN, COPY or ADD."""

    __slots__ = ("name", "content", "expand", "chomp", "fd")
    _defaults = {"expand": True, "chomp": False, "fd": 0}
    name: str
    content: str
    if TYPE_CHECKING:  # the `_defaults`
        expand: bool = True
        chomp: bool = False
        fd: int = 0
    else:
        expand: bool
        chomp: bool
        fd: int

    @property
    def body(self) -> str:
        """The content with leading tabs stripped from each line when opened with `<<-`."""
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(keepends=True))


class Instruction(Node):
    """Base of every instruction: its range, source text, flags and raw argument words."""

    KEYWORD: ClassVar[str] = ""
    __slots__ = ("range", "raw", "flags", "args")

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


class From(Instruction):
    KEYWORD: ClassVar[str] = "from"
    __slots__ = ("image", "alias", "platform")
    image: str
    alias: str | None
    platform: str | None


class Run(Instruction):
    KEYWORD: ClassVar[str] = "run"
    __slots__ = ("command", "heredocs")
    _defaults = {"heredocs": ()}
    command: Command | None
    if TYPE_CHECKING:
        heredocs: tuple[Heredoc, ...] = ()
    else:
        heredocs: tuple[Heredoc, ...]


class Cmd(Instruction):
    KEYWORD: ClassVar[str] = "cmd"
    __slots__ = ("command",)
    command: Command | None


class Entrypoint(Instruction):
    KEYWORD: ClassVar[str] = "entrypoint"
    __slots__ = ("command",)
    command: Command | None


class Shell(Instruction):
    KEYWORD: ClassVar[str] = "shell"
    __slots__ = ("command",)
    command: Command | None


class Env(Instruction):
    KEYWORD: ClassVar[str] = "env"
    __slots__ = ("pairs",)
    pairs: tuple[tuple[str, str], ...]


class Label(Instruction):
    KEYWORD: ClassVar[str] = "label"
    __slots__ = ("pairs",)
    pairs: tuple[tuple[str, str], ...]


class Arg(Instruction):
    KEYWORD: ClassVar[str] = "arg"
    __slots__ = ("pairs",)
    pairs: tuple[tuple[str, str | None], ...]


class Copy(Instruction):
    KEYWORD: ClassVar[str] = "copy"
    __slots__ = ("sources", "dest", "json", "heredocs")
    _defaults = {"json": False, "heredocs": ()}
    sources: tuple[str, ...]
    dest: str
    if TYPE_CHECKING:
        json: bool = False
        heredocs: tuple[Heredoc, ...] = ()
    else:
        json: bool
        heredocs: tuple[Heredoc, ...]


class Add(Instruction):
    KEYWORD: ClassVar[str] = "add"
    __slots__ = ("sources", "dest", "json", "heredocs")
    _defaults = {"json": False, "heredocs": ()}
    sources: tuple[str, ...]
    dest: str
    if TYPE_CHECKING:
        json: bool = False
        heredocs: tuple[Heredoc, ...] = ()
    else:
        json: bool
        heredocs: tuple[Heredoc, ...]


class Expose(Instruction):
    KEYWORD: ClassVar[str] = "expose"
    __slots__ = ("ports",)
    ports: tuple[str, ...]


class Volume(Instruction):
    KEYWORD: ClassVar[str] = "volume"
    __slots__ = ("paths", "json")
    _defaults = {"json": False}
    paths: tuple[str, ...]
    if TYPE_CHECKING:
        json: bool = False
    else:
        json: bool


class User(Instruction):
    KEYWORD: ClassVar[str] = "user"
    __slots__ = ("user",)
    user: str


class Workdir(Instruction):
    KEYWORD: ClassVar[str] = "workdir"
    __slots__ = ("path",)
    path: str


class Stopsignal(Instruction):
    KEYWORD: ClassVar[str] = "stopsignal"
    __slots__ = ("signal",)
    signal: str


class Maintainer(Instruction):
    KEYWORD: ClassVar[str] = "maintainer"
    __slots__ = ("name",)
    name: str


class Healthcheck(Instruction):
    KEYWORD: ClassVar[str] = "healthcheck"
    __slots__ = ("kind", "command")
    kind: str
    command: Command | None


class Onbuild(Instruction):
    KEYWORD: ClassVar[str] = "onbuild"
    __slots__ = ("trigger",)
    trigger: Instruction


class Unknown(Instruction):
    """An instruction Docker does not know; kept so that tools can see it."""

    __slots__ = ("word", "text")
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


class Stage(Node):
    """One build stage: its FROM and the instructions that follow it."""

    __slots__ = ("index", "name", "base", "instructions")
    index: int
    name: str | None
    base: From
    instructions: tuple[Instruction, ...]


class Dockerfile(Node):
    """A parsed Dockerfile. `instructions` holds every instruction in order, meta ARGs included."""

    __slots__ = ("filename", "directives", "escape", "meta_args", "stages", "instructions")
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
