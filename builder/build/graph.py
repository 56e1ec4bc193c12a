"""The build graph: stages of nodes, each node one operation with its Dockerfile origin.

`builder.build.convert` makes a `BuildGraph` from a Dockerfile; `builder.build.solver` walks it. Nothing here
knows the grammar or the runtime: ops are plain frozen data, already expanded.

    BuildGraph(stages, target)
      Stage(index, name, base: ImageSource | Scratch | StageRef, nodes, deps)
        Node(op: Exec | FileCopy | Mkdir | ConfigChange, origin, created_by, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a node comes from: the Dockerfile, 1-based line and column, and the source line."""

    filename: str
    line: int
    column: int = 1
    end_line: int = 0
    text: str = ""


# --- stage bases -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ImageSource:
    """`FROM name[:tag][@digest]`: an image from the local store (or pulled)."""

    ref: str
    platform: str = ""


@dataclass(frozen=True, slots=True)
class Scratch:
    """`FROM scratch`: no layers, an empty config."""


@dataclass(frozen=True, slots=True)
class StageRef:
    """`FROM <earlier stage>`: the result of another stage of the same Dockerfile."""

    index: int


Base = Union[ImageSource, Scratch, StageRef]


# --- ops ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunMount:
    """One `RUN --mount=...`, expanded. `source_stage` is set for `from=<stage>` (bind/cache)."""

    type: str  # bind | cache | tmpfs | secret | ssh | file (a RUN heredoc script, never from the user)
    target: str = ""
    source: str = ""
    source_stage: int | None = None
    source_image: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str = ""  # secret exposed as an environment variable
    size: int | None = None  # tmpfs size in bytes
    content: str = ""  # type=file: the file's text

    def key_part(self) -> dict[str, Any]:
        """What of this mount decides the result (secrets: only their id and target)."""
        d: dict[str, Any] = {"type": self.type, "target": self.target}
        if self.type in ("bind", "cache"):
            d.update(source=self.source, readonly=self.readonly, id=self.id, sharing=self.sharing)
        if self.type in ("secret", "ssh"):  # the id, never the value or the agent socket
            d.update(id=self.id, env=self.env, required=self.required)
        if self.type == "file":
            d["content"] = self.content
        if self.mode is not None:
            d["mode"] = self.mode
        if self.uid is not None or self.gid is not None:
            d.update(uid=self.uid, gid=self.gid)
        return d


@dataclass(frozen=True, slots=True)
class Exec:
    """RUN: argv to run with the stage's env, user and working directory at that point."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    user: str
    cwd: str
    network: str = "default"
    mounts: tuple[RunMount, ...] = ()
    security: str = "sandbox"
    build_args: tuple[tuple[str, str], ...] = ()  # ARG values visible to the step (part of the key)


@dataclass(frozen=True, slots=True)
class FileCopy:
    """COPY / ADD, expanded. Sources are context paths, URLs, or paths in `from_stage`/`from_image`."""

    kind: str  # COPY | ADD
    sources: tuple[str, ...]
    dest: str
    cwd: str
    from_stage: int | None = None
    from_image: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    checksum: str = ""
    keep_git_dir: bool = False
    heredocs: tuple[tuple[str, str], ...] = ()  # (name, content) for COPY <<EOF
    user: str = ""  # the stage's USER, used to resolve --chown names
    git: bool = False  # ADD of a git repository: `sources` is its one URL


@dataclass(frozen=True, slots=True)
class Mkdir:
    """WORKDIR: create the directory (owned by `user`) if it is missing."""

    path: str
    user: str = ""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """An instruction that only changes the image config (ENV, LABEL, CMD, ...). No layer."""


Op = Union[Exec, FileCopy, Mkdir, ConfigChange]


@dataclass(frozen=True, slots=True)
class Node:
    """One step of a stage: its op, its config after the step, and its history entry."""

    op: Op
    origin: Origin
    instruction: str  # normalized instruction text, as progress shows it ("RUN make")
    created_by: str  # history created_by, as docker build records it
    config: dict[str, Any] = field(hash=False, compare=False, default_factory=dict)
    comment: str = ""
    key_extra: tuple[tuple[str, str], ...] = ()  # values the op uses beyond its own fields

    @property
    def makes_layer(self) -> bool:
        return not isinstance(self.op, ConfigChange)


@dataclass(slots=True)
class Stage:
    """A `FROM` and the nodes after it, up to the next `FROM`."""

    index: int
    name: str
    base: Base
    origin: Origin
    nodes: list[Node] = field(default_factory=list)
    base_config: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the final config of the stage
    platform: str = ""

    @property
    def label(self) -> str:
        """How progress names the stage: its name, or `stage-N`."""
        return self.name or f"stage-{self.index}"

    def deps(self) -> set[int]:
        """Indices of the stages this one reads from (its base, COPY --from, RUN --mount from=)."""
        out: set[int] = set()
        if isinstance(self.base, StageRef):
            out.add(self.base.index)
        for node in self.nodes:
            op = node.op
            if isinstance(op, FileCopy) and op.from_stage is not None:
                out.add(op.from_stage)
            elif isinstance(op, Exec):
                out.update(m.source_stage for m in op.mounts if m.source_stage is not None)
        return out


@dataclass(slots=True)
class BuildGraph:
    """All stages a build needs (pruned to the target), in Dockerfile order."""

    stages: dict[int, Stage]
    target: int
    warnings: list[str] = field(default_factory=list)

    def order(self) -> list[int]:
        """Stage indices so that every stage comes after the stages it reads from."""
        return sorted(self.stages)  # a stage can only read from earlier stages

    def needed(self, target: int) -> set[int]:
        """The target stage and everything it transitively reads from."""
        seen: set[int] = set()
        todo = [target]
        while todo:
            i = todo.pop()
            if i not in seen:
                seen.add(i)
                todo.extend(self.stages[i].deps())
        return seen
