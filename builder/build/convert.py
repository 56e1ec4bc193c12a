"""Dockerfile AST -> BuildGraph: stages, ARG/ENV scoping, expansion, image config, --target pruning.

    convert(dockerfile, options, resolve_image) -> BuildGraph

This is the only module of the builder that reads grammar types. It follows BuildKit's
dockerfile2llb rules:

- global ARGs (before the first FROM) expand FROM lines only; a stage sees one after
  re-declaring it (`ARG NAME`); `--build-arg` overrides a declared default;
- the predefined platform ARGs (TARGETPLATFORM, BUILDARCH, ...) are global without a
  declaration; the proxy ARGs reach RUN's environment without one, and never the image config,
  the history or a cache key;
- ENV wins over an ARG of the same name; expansion happens in ADD, COPY, ENV, EXPOSE, FROM,
  LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG defaults and the flags of COPY/ADD/RUN, never
  in RUN, CMD, ENTRYPOINT or SHELL commands (the shell does that);
- history `created_by` strings are the ones BuildKit records (`RUN /bin/sh -c make # buildkit`).

`resolve_image(ref, platform) -> config dict` is called only for stages the target needs, so
a pruned stage's base is never looked up or pulled.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from builder.errors import BuildError, StageError, StepError
from builder.build.graph import (
    BuildGraph,
    ConfigChange,
    Exec,
    FileCopy,
    ImageSource,
    Mkdir,
    Node,
    Origin,
    RunMount,
    Scratch,
    Stage,
    StageRef,
)
from grammar import ast
from grammar.errors import DockerfileError, ExpansionError, InstructionError, InvalidFlagError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
HISTORY_COMMENT = "buildkit.dockerfile.v0"

ResolveImage = Callable[[str, str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line decides about the conversion."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: str = ""  # "os/arch[/variant]"; "" = this machine
    labels: Mapping[str, str] = field(default_factory=dict)


def host_platform() -> str:
    from builder.oci.platform import format_platform, host

    return format_platform(host())


def _origin(df: ast.Dockerfile, inst: ast.Instruction) -> Origin:
    r = inst.range
    first = inst.raw.split("\n", 1)[0]
    return Origin(df.filename, r.start_line, r.start_col, r.end_line, first)


def _locate(exc: DockerfileError, origin: Origin) -> DockerfileError:
    if not exc.line:
        exc.filename, exc.line, exc.column, exc.source_line = origin.filename, origin.line, origin.column, origin.text
        at = origin.text.find(getattr(exc, "word", "") or "\0", origin.column - 1)
        if at >= 0:  # the caret on the word that failed to expand, when it is on the first line
            exc.column = at + 1
    return exc


def _go_quote_list(items: list[str] | tuple[str, ...]) -> str:
    """Go's `%q` of a []string: `["a" "b"]`."""
    import json

    return "[" + " ".join(json.dumps(s, ensure_ascii=False) for s in items) + "]"


class _StageState:
    """The mutable state while one stage is converted."""

    def __init__(self, config: dict[str, Any], args: dict[str, str | None]) -> None:
        self.config = config
        self.args = args  # declared ARGs in scope (None: declared without a value)
        self.cmd_set = False
        self.arg_order: list[str] = []
        # ARG values declared after an ENV of the same name (the base image's too): BuildKit's build
        # env takes them, so they win for RUN and expansion until an ENV sets that name again
        self.arg_over: dict[str, str] = {}

    def env_map(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            env[k] = v
        return env

    def expand_env(self) -> dict[str, str]:
        """What `$VAR` (and RUN) sees: the ARGs in scope, overridden by ENV, overridden by an ARG
        declared after that ENV (BuildKit: the later of the two wins)."""
        out = {k: v for k, v in self.args.items() if v is not None}
        out.update(self.env_map())
        out.update(self.arg_over)
        return out

    def set_env(self, key: str, value: str) -> None:
        self.arg_over.pop(key, None)
        env = list(self.config.get("Env") or [])
        for i, item in enumerate(env):
            if item.partition("=")[0] == key:
                env[i] = f"{key}={value}"
                break
        else:
            env.append(f"{key}={value}")
        self.config["Env"] = env


class Converter:
    """Converts one parsed Dockerfile; `convert()` below is the entry point."""

    def __init__(self, df: ast.Dockerfile, options: Options, resolve_image: ResolveImage) -> None:
        self.df = df
        self.opts = options
        self.resolve_image = resolve_image
        self.escape = df.escape
        from builder.oci.platform import format_platform, parse, platform_args

        self.target_platform = format_platform(parse(options.platform)) if options.platform else host_platform()
        self.predefined = platform_args(self.target_platform, host_platform())
        self.used_args: set[str] = set()
        self.names: dict[str, int] = {}
        self.stages: dict[int, Stage] = {}
        for st in df.stages:
            if st.name:  # a repeated name means its last stage (BuildKit's statesByName)
                self.names[st.name.lower()] = st.index

    # --- expansion ------------------------------------------------------------------------------

    def expand(self, word: str, env: Mapping[str, str], origin: Origin) -> str:
        from grammar.shell_lexer import process_word  # (grammar.expand the module shadows the function)

        try:
            return process_word(word, env, self.escape)
        except ExpansionError as exc:
            raise _locate(exc, origin) from None

    def expand_heredoc(self, body: str, env: Mapping[str, str], origin: Origin) -> str:
        from grammar import expand_heredoc  # quotes kept, as BuildKit expands COPY <<EOF bodies

        try:
            return expand_heredoc(body, env)
        except ExpansionError as exc:
            raise _locate(exc, origin) from None

    def expand_words(self, text: str, env: Mapping[str, str], origin: Origin) -> list[str]:
        from grammar.shell_lexer import process_words

        try:
            return process_words(text, env, self.escape)
        except ExpansionError as exc:
            raise _locate(exc, origin) from None

    # --- global scope ---------------------------------------------------------------------------

    def global_args(self) -> dict[str, str | None]:
        env: dict[str, str | None] = dict(self.predefined)
        for inst in self.df.meta_args:
            origin = _origin(self.df, inst)
            for name, default in inst.pairs:
                if name in self.opts.build_args:
                    env[name] = self.opts.build_args[name]
                    self.used_args.add(name)
                elif default is not None:
                    env[name] = self.expand(default, {k: v for k, v in env.items() if v is not None}, origin)
                else:
                    env.setdefault(name, None)
        return env

    def stage_index(self, ref: str, origin: Origin, *, before: int) -> int | None:
        """The stage a `--from`/`FROM` value names (name or index), or None for an image."""
        idx = self.names.get(ref.lower())
        if idx is None and ref.isdigit():
            idx = int(ref)
            if idx >= len(self.df.stages):
                raise StageError(f"{origin.filename}:{origin.line}:{origin.column}: stage index {idx} does not exist "
                                 f"(the Dockerfile has {len(self.df.stages)} stages)")
        if idx is not None and idx >= before:
            what = "itself" if idx == before else "a later stage"
            raise StageError(f"{origin.filename}:{origin.line}:{origin.column}: stage {ref!r} refers to {what} "
                             "(a cycle between stages)", hint="a stage can only use stages defined above it")
        return idx

    def base_stage(self, name: str, index: int) -> int | None:
        """The stage `FROM name` in stage `index` names: the last one of that name above it (BuildKit
        looks FROM up while it adds stages in order), else the name's stage (a cycle), else None."""
        above = [st.index for st in self.df.stages[:index] if st.name and st.name.lower() == name.lower()]
        return above[-1] if above else self.names.get(name.lower())

    def check_typo(self, flag: str, ref: str, origin: Origin) -> None:
        """`--from=buidler` beside a stage `builder`: when no image has that name either, say which
        stage was meant before any step runs (instead of a registry error when the step runs)."""
        from grammar.flags import suggest

        names = [st.name for st in self.df.stages if st.name]
        guess = suggest(ref, names) if names and not any(c in ref for c in "/:@") else None
        if guess is None:
            return
        try:
            self.resolve_image(ref, "")
        except BuildError as exc:
            raise StepError(f"{flag}={ref}: no stage of this Dockerfile has that name, nor any image "
                            f"({exc.message})", filename=origin.filename, line=origin.line, column=origin.column,
                            source_line=origin.text, hint=f"did you mean the stage {guess!r}?") from None

    # --- dependencies, before anything is resolved ---------------------------------------------

    def deps_of(self, st: ast.Stage, meta: Mapping[str, str]) -> set[int]:
        """Stages a stage reads from, found without resolving any image."""
        deps: set[int] = set()
        base_origin = _origin(self.df, st.base)
        base = self.expand(st.base.image, meta, base_origin)
        idx = self.base_stage(base, st.index)
        if idx is not None:
            if idx >= st.index:
                self.stage_index(base, base_origin, before=st.index)
            deps.add(idx)
        for inst in st.instructions:
            origin = _origin(self.df, inst)
            refs: list[str] = []
            if isinstance(inst, (ast.Copy, ast.Add)) and inst.flag("from"):
                refs.append(self.expand(inst.flag("from") or "", meta, origin))
            if isinstance(inst, ast.Run):
                for m in inst.flag_values("mount"):
                    opts = _mount_options(m)
                    if "from" in opts:
                        refs.append(self.expand(opts["from"], meta, origin))
            for ref in refs:
                i = self.stage_index(ref, origin, before=st.index)
                if i is not None:
                    deps.add(i)
        return deps

    def target_index(self) -> int:
        target = self.opts.target
        if not target:
            return len(self.df.stages) - 1
        idx = self.names.get(target.lower())
        if idx is None:
            names = ", ".join(sorted(self.names)) or "none"
            raise StageError(f"target stage {target!r} could not be found", hint=f"stage names: {names}")
        return idx

    # --- conversion -----------------------------------------------------------------------------

    def convert(self) -> BuildGraph:
        if not self.df.stages:
            raise StageError(f"{self.df.filename}: no FROM instruction: nothing to build",
                             hint="a Dockerfile starts with FROM (ARG may come before it)")
        globals_ = self.global_args()
        meta = {k: v for k, v in globals_.items() if v is not None}
        deps = {st.index: self.deps_of(st, meta) for st in self.df.stages}
        target = self.target_index()
        needed: set[int] = set()
        todo = [target]
        while todo:
            i = todo.pop()
            if i not in needed:
                needed.add(i)
                todo.extend(deps[i])
        for st in self.df.stages:
            if st.index in needed:
                self.stages[st.index] = self.convert_stage(st, globals_, meta)
        graph = BuildGraph(self.stages, target)
        unused = sorted(k for k in self.opts.build_args
                        if k not in self.used_args and k not in PROXY_ARGS and k not in self.predefined
                        and not k.startswith("BUILDKIT_"))  # frontend options (BUILDKIT_DOCKERFILE_CHECK, ...)
        if unused:
            graph.warnings.append(f"one or more build args were not consumed: {', '.join(unused)}")
        return graph

    def convert_stage(self, st: ast.Stage, globals_: dict[str, str | None], meta: dict[str, str]) -> Stage:
        origin = _origin(self.df, st.base)
        image = self.expand(st.base.image, meta, origin)
        if not image:  # BuildKit's words; a FROM variable with no value
            raise InstructionError(f"base name ({st.base.image}) should not be blank", filename=origin.filename,
                                   line=origin.line, column=origin.column, source_line=origin.text,
                                   hint="give the variable a value: ARG NAME=... before the first FROM, "
                                        "or --build-arg NAME=...")
        platform = self.expand(st.base.platform, meta, origin) if st.base.platform else ""
        if platform:
            platform = _normalized_platform(platform, origin)
        ref_idx = self.base_stage(image, st.index)
        if ref_idx is not None and ref_idx < st.index:
            base: Any = StageRef(ref_idx)
            base_config = _copy_config(self.stages[ref_idx].config)
        elif image.lower() == "scratch":
            base, base_config = Scratch(), {}
        else:  # the base for the stage's platform: FROM --platform's, else an explicit --platform's
            base = ImageSource(image, platform or (self.target_platform if self.opts.platform else ""))
            try:
                base_config = _copy_config(self.resolve_image(image, base.platform))
            except BuildError as exc:
                raise StepError(exc.message, filename=origin.filename, line=origin.line, column=origin.column,
                                source_line=origin.text, hint=exc.hint) from None
        stage = Stage(st.index, st.name or "", base, origin, base_config=_copy_config(base_config),
                      platform=platform or self.target_platform)
        config = _copy_config(base_config)
        if not any(e.startswith("PATH=") for e in config.get("Env") or []):
            config["Env"] = list(config.get("Env") or []) + [f"PATH={DEFAULT_PATH}"]
        triggers = config.pop("OnBuild", None) or []
        state = _StageState(config, {})
        state.globals = globals_  # type: ignore[attr-defined]
        if triggers:
            self.run_triggers(stage, state, triggers, origin)
        for inst in st.instructions:
            self.dispatch(stage, state, inst, _origin(self.df, inst))
        for k, v in self.opts.labels.items():
            state.config.setdefault("Labels", {})[k] = v
        stage.config = state.config
        return stage

    def run_triggers(self, stage: Stage, state: _StageState, triggers: list[str], origin: Origin) -> None:
        """Run the base image's ONBUILD triggers in order, located at the FROM line."""
        from grammar import parse

        text = "FROM scratch\n" + "\n".join(triggers) + "\n"
        try:
            parsed = parse(text, filename=f"{origin.filename} (ONBUILD of the base image)")
        except DockerfileError as exc:
            raise _locate(exc, origin) from None
        for inst in parsed.stages[0].instructions:
            self.dispatch(stage, state, inst, origin)

    def add(self, stage: Stage, node: Node) -> None:
        stage.nodes.append(node)

    def config_node(self, stage: Stage, origin: Origin, instruction: str, created_by: str) -> None:
        self.add(stage, Node(ConfigChange(), origin, instruction, created_by))

    def dispatch(self, stage: Stage, state: _StageState, inst: ast.Instruction, origin: Origin) -> None:
        method = getattr(self, "on_" + inst.keyword, None)
        if method is None:
            raise InvalidFlagError(f"unknown instruction: {inst.keyword.upper()}", filename=origin.filename,
                                   line=origin.line, column=origin.column, source_line=origin.text)
        method(stage, state, inst, origin)

    # --- instructions ---------------------------------------------------------------------------

    def on_arg(self, stage: Stage, state: _StageState, inst: ast.Arg, origin: Origin) -> None:
        commit = []
        for name, default in inst.pairs:
            if name in self.opts.build_args:
                value: str | None = self.opts.build_args[name]
                self.used_args.add(name)
            elif default is not None:
                value = self.expand(default, state.expand_env(), origin)
            else:
                value = state.globals.get(name)  # type: ignore[attr-defined]
            commit.append(name if value is None else f"{name}={value}")  # the value in effect, as BuildKit
            state.args[name] = value
            if value is not None:
                state.arg_over[name] = value
            if name not in state.arg_order:
                state.arg_order.append(name)
        self.config_node(stage, origin, "ARG " + " ".join(commit), "ARG " + " ".join(commit))

    def on_env(self, stage: Stage, state: _StageState, inst: ast.Env, origin: Origin) -> None:
        shown = []
        env = state.expand_env()  # every pair sees the values from before this ENV (Docker's rule)
        for key, value in inst.pairs:
            k = self.expand(key, env, origin)
            v = self.expand(value, env, origin)
            state.set_env(k, v)
            shown.append(f"{k}={v}")
        self.config_node(stage, origin, "ENV " + " ".join(shown), "ENV " + " ".join(shown))

    def on_label(self, stage: Stage, state: _StageState, inst: ast.Label, origin: Origin) -> None:
        shown = []
        labels = dict(state.config.get("Labels") or {})
        env = state.expand_env()
        for key, value in inst.pairs:
            k, v = self.expand(key, env, origin), self.expand(value, env, origin)
            labels[k] = v
            shown.append(f"{k}={v}")
        state.config["Labels"] = labels
        self.config_node(stage, origin, "LABEL " + " ".join(shown), "LABEL " + " ".join(shown))

    def on_maintainer(self, stage: Stage, state: _StageState, inst: ast.Maintainer, origin: Origin) -> None:
        state.config["__author__"] = inst.name
        self.config_node(stage, origin, "MAINTAINER " + inst.name, "MAINTAINER " + inst.name)

    def on_expose(self, stage: Stage, state: _StageState, inst: ast.Expose, origin: Origin) -> None:
        ports = dict(state.config.get("ExposedPorts") or {})
        env = state.expand_env()
        these: list[str] = []
        for word in sorted(inst.ports):  # BuildKit sorts the words as written, then expands each
            for p in self.expand_words(word, env, origin):
                these.extend(_expand_port(p, origin))
        ports.update((p, {}) for p in sorted(set(these)))
        state.config["ExposedPorts"] = ports
        # history as BuildKit (dockerfile 1.19+) records it: the ports in that order, `EXPOSE [80/tcp 53/udp]`
        self.config_node(stage, origin, "EXPOSE " + " ".join(inst.ports), "EXPOSE [" + " ".join(these) + "]")

    def on_volume(self, stage: Stage, state: _StageState, inst: ast.Volume, origin: Origin) -> None:
        vols = dict(state.config.get("Volumes") or {})
        env = state.expand_env()
        paths = [self.expand(p, env, origin) for p in inst.paths]
        for p in paths:
            if not p.strip():
                raise _flag_error("VOLUME specified can not be an empty string", origin)
            vols[p] = {}
        state.config["Volumes"] = vols
        self.config_node(stage, origin, "VOLUME " + " ".join(paths), "VOLUME [" + " ".join(paths) + "]")

    def on_user(self, stage: Stage, state: _StageState, inst: ast.User, origin: Origin) -> None:
        user = self.expand(inst.user, state.expand_env(), origin)
        state.config["User"] = user
        self.config_node(stage, origin, "USER " + user, "USER " + user)

    def on_stopsignal(self, stage: Stage, state: _StageState, inst: ast.Stopsignal, origin: Origin) -> None:
        sig = self.expand(inst.signal, state.expand_env(), origin)
        if not _is_signal(sig):
            raise _flag_error(f"invalid signal: {sig}", origin)
        state.config["StopSignal"] = sig
        self.config_node(stage, origin, "STOPSIGNAL " + sig, "STOPSIGNAL " + sig)

    def on_workdir(self, stage: Stage, state: _StageState, inst: ast.Workdir, origin: Origin) -> None:
        path = self.expand(inst.path, state.expand_env(), origin)
        wd = posixpath.normpath(posixpath.join(state.config.get("WorkingDir") or "/", path))
        if wd.startswith("//"):
            wd = wd[1:]
        state.config["WorkingDir"] = wd
        created_by = "WORKDIR " + wd
        if wd == "/":
            self.config_node(stage, origin, created_by, created_by)
        else:
            self.add(stage, Node(Mkdir(wd, state.config.get("User") or ""), origin, created_by, created_by))

    def on_shell(self, stage: Stage, state: _StageState, inst: ast.Shell, origin: Origin) -> None:
        if not isinstance(inst.command, ast.ExecForm) or not inst.command.args:
            raise _flag_error("SHELL requires the arguments to be in JSON form", origin)
        state.config["Shell"] = list(inst.command.args)
        self.config_node(stage, origin, "SHELL " + _go_quote_list(inst.command.args),
                         "SHELL [" + " ".join(inst.command.args) + "]")

    def _command(self, state: _StageState, command: ast.Command | None) -> list[str]:
        if command is None:
            return []
        if isinstance(command, ast.ExecForm):
            return list(command.args)
        return list(state.config.get("Shell") or DEFAULT_SHELL) + [command.text]

    def on_cmd(self, stage: Stage, state: _StageState, inst: ast.Cmd, origin: Origin) -> None:
        cmd = self._command(state, inst.command)
        state.config["Cmd"] = cmd
        state.config["ArgsEscaped"] = True  # BuildKit sets it with every CMD (a legacy field Linux ignores)
        state.cmd_set = True
        self.config_node(stage, origin, "CMD " + _go_quote_list(cmd), "CMD " + _go_quote_list(cmd))

    def on_entrypoint(self, stage: Stage, state: _StageState, inst: ast.Entrypoint, origin: Origin) -> None:
        ep = self._command(state, inst.command)
        state.config["Entrypoint"] = ep or None
        if not state.cmd_set:
            state.config["Cmd"] = None
        self.config_node(stage, origin, "ENTRYPOINT " + _go_quote_list(ep), "ENTRYPOINT " + _go_quote_list(ep))

    def on_healthcheck(self, stage: Stage, state: _StageState, inst: ast.Healthcheck, origin: Origin) -> None:
        if inst.kind == "NONE":
            hc: dict[str, Any] = {"Test": ["NONE"]}
        else:
            cmd = inst.command
            test = ["CMD", *cmd.args] if isinstance(cmd, ast.ExecForm) else ["CMD-SHELL", cmd.text if cmd else ""]
            hc = {"Test": test}
            for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                              ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
                if inst.flag(flag) is not None:
                    hc[key] = _duration_ns(inst.flag(flag) or "", origin)
            if inst.flag("retries") is not None:
                try:
                    hc["Retries"] = int(inst.flag("retries") or "")
                except ValueError:
                    raise _flag_error(f"invalid --retries value {inst.flag('retries')!r}", origin) from None
        state.config["Healthcheck"] = hc
        shown = "HEALTHCHECK " + ("NONE" if inst.kind == "NONE" else _go_quote_list(hc["Test"]))
        # BuildKit records Go's %+v of the healthcheck config
        fields = " ".join(f"{k}:{_go_duration(hc.get(k, 0))}" for k in ("Interval", "Timeout", "StartPeriod",
                                                                         "StartInterval"))
        created_by = f"HEALTHCHECK {{Test:[{' '.join(hc['Test'])}] {fields} Retries:{hc.get('Retries', 0)}}}"
        self.config_node(stage, origin, shown, created_by)

    def on_onbuild(self, stage: Stage, state: _StageState, inst: ast.Onbuild, origin: Origin) -> None:
        from grammar import onbuild_expression

        text = onbuild_expression(inst, self.escape)
        state.config["OnBuild"] = list(state.config.get("OnBuild") or []) + [text]
        self.config_node(stage, origin, "ONBUILD " + text, "")  # BuildKit adds no history entry for ONBUILD

    def _build_arg_env(self, state: _StageState) -> list[tuple[str, str]]:
        """ARGs in scope with a value, as RUN sees them (ENV of the same name wins)."""
        env = state.env_map()
        return [(k, state.args[k] or "") for k in state.arg_order
                if state.args.get(k) is not None and k not in env]

    def on_run(self, stage: Stage, state: _StageState, inst: ast.Run, origin: Origin) -> None:
        cmd = inst.command
        shell = list(state.config.get("Shell") or DEFAULT_SHELL)
        script_file: list[RunMount] = []
        if isinstance(cmd, ast.ExecForm):
            argv = list(cmd.args)
        elif cmd is None:
            raise _flag_error("RUN needs a command", origin)
        elif inst.heredocs and _single_heredoc(cmd.text):  # `<<EOF`, `<<'EOF'`, `3<<EOF`, `<< EOF`...
            body = inst.heredocs[0].body
            if body.startswith("#!"):  # BuildKit runs it as a file, so its interpreter line counts
                script_file.append(RunMount("file", f"/dev/pipes/{inst.heredocs[0].name}", mode=0o755, content=body))
                argv = shell + [script_file[0].target]
            else:
                argv = shell + [body]
        elif inst.heredocs:
            script = cmd.text + "".join("\n" + h.content + h.name for h in inst.heredocs)  # as BuildKit
            argv = shell + [script]
        else:
            argv = shell + [cmd.text]
        expand_env = state.expand_env()
        cwd = state.config.get("WorkingDir") or "/"
        mounts = _ssh_defaults([self._mount(m, expand_env, stage, cwd, origin) for m in inst.flag_values("mount")]
                               + script_file)
        network = inst.flag("network") or "default"
        if network not in ("default", "none", "host"):
            raise _flag_error(f"unsupported network mode {network!r} (default, none or host)", origin)
        args = self._build_arg_env(state)
        proxies = [(k, v) for k, v in self.opts.build_args.items() if k in PROXY_ARGS]
        env = tuple((k, state.arg_over.get(k, v)) for k, v in (item.partition("=")[::2]
                                                                for item in state.config.get("Env") or []))
        op = Exec(tuple(argv), env + tuple(args) + tuple(proxies), state.config.get("User") or "",
                  state.config.get("WorkingDir") or "/", network, mounts, inst.flag("security") or "sandbox",
                  build_args=tuple(args))
        # BuildKit's history names every ARG declared so far, with the value RUN sees ("" if none)
        shown_args = [f"{k}={expand_env.get(k, '')}" for k in state.arg_order]
        prefix = f"|{len(shown_args)} " + " ".join(shown_args) + " " if shown_args else ""
        if isinstance(cmd, ast.ExecForm):
            shown = "RUN " + _go_quote_list(argv)
        else:
            shown = "RUN " + (cmd.text.strip() if script_file else " ".join(argv[len(shell):]))
        self.add(stage, Node(op, origin, shown, "RUN " + prefix + " ".join(argv) + " # buildkit"))

    def _mount(self, spec: str, env: Mapping[str, str], stage: Stage, cwd: str, origin: Origin) -> RunMount:
        from grammar.flags import FlagError, parse_mount, ram_in_bytes

        try:  # BuildKit's checks after expansion (the parser checked what holds no `$`)
            parse_mount(spec, lambda v: self.expand(v, env, origin))
        except FlagError as exc:
            raise _flag_error(str(exc), origin, exc.hint) from None
        opts = {k: self.expand(v, env, origin) for k, v in _mount_options(spec).items()}
        mtype = opts.pop("type", "bind")
        if mtype not in ("bind", "cache", "tmpfs", "secret", "ssh"):
            raise _flag_error(f"unsupported mount type {mtype!r}", origin)
        target = opts.pop("target", opts.pop("dst", opts.pop("destination", "")))
        if mtype == "secret" and not target and not opts.get("env"):
            target = "/run/secrets/" + opts.get("id", posixpath.basename(opts.get("source", "")))
        if not target and mtype != "ssh":
            raise _flag_error(f"mount type={mtype} needs a target", origin)
        if target and not target.startswith("/"):
            target = posixpath.join(cwd, target)
        source_stage, source_image = None, ""
        if "from" in opts:
            ref = opts.pop("from")
            source_stage = self.stage_index(ref, origin, before=stage.index)
            source_image = "" if source_stage is not None else ref
            if source_stage is None:
                self.check_typo("--mount from", ref, origin)
        rw = opts.pop("rw", opts.pop("readwrite", None))
        ro = opts.pop("ro", opts.pop("readonly", None))
        readonly = mtype == "bind" and rw in (None, "false") or ro in ("", "true")
        if mtype in ("cache", "tmpfs"):
            readonly = ro in ("", "true")

        def num(name: str, base: int = 10) -> int | None:
            if name not in opts:
                return None
            try:
                return int(opts[name], base)
            except ValueError:
                raise _flag_error(f"invalid mount option {name}={opts[name]!r}", origin) from None

        sharing = opts.get("sharing", "shared")
        if sharing not in ("shared", "private", "locked"):
            raise _flag_error(f"invalid sharing {sharing!r} (shared, private or locked)", origin)
        return RunMount(mtype, target, opts.get("source", opts.get("src", "")), source_stage, source_image,
                        readonly, opts.get("id", ""), sharing, num("mode", 8), num("uid"), num("gid"),
                        opts.get("required", "false") in ("", "true"), opts.get("env", ""),
                        ram_in_bytes(opts["size"]) if "size" in opts else None)

    def _copy(self, stage: Stage, state: _StageState, inst: ast.Copy | ast.Add, origin: Origin) -> None:
        kind = inst.keyword.upper()
        env = state.expand_env()
        sources = [s for s in inst.sources if not (inst.heredocs and s.startswith("<<"))]
        srcs = [self.expand(s, env, origin) for s in sources]
        dest = self.expand(inst.dest, env, origin)
        heredocs = tuple((h.name, self.expand_heredoc(h.body, env, origin) if h.expand else h.body)
                         for h in inst.heredocs)
        from_stage, from_image = None, ""
        if inst.flag("from"):
            ref = self.expand(inst.flag("from") or "", env, origin)
            from_stage = self.stage_index(ref, origin, before=stage.index)
            from_image = "" if from_stage is not None else ref
            if from_stage is None:
                self.check_typo("--from", ref, origin)
        chown = self.expand(inst.flag("chown") or "", env, origin)
        chmod = self.expand(inst.flag("chmod") or "", env, origin)
        if kind == "COPY" and inst.flag("checksum"):
            raise _flag_error("--checksum is only valid for ADD", origin)
        git, shown_srcs = False, srcs
        if kind == "ADD":
            from builder.build.sources.git import is_git_url, redact

            git = any(is_git_url(s) for s in srcs)
            if git and (len(srcs) != 1 or heredocs):
                raise _flag_error("ADD of a git repository takes exactly one source", origin)
            if git:
                try:
                    shown_srcs = [redact(srcs[0])]  # no credentials in history, records or progress
                except BuildError as exc:
                    raise _flag_error(exc.message, origin) from None
        op = FileCopy(kind, tuple(srcs), dest, state.config.get("WorkingDir") or "/", from_stage, from_image,
                      chown, chmod, inst.flag("link") == "true", inst.flag("parents") == "true",
                      tuple(self.expand(e, env, origin) for e in inst.flag_values("exclude")),
                      self.expand(inst.flag("checksum") or "", env, origin),
                      inst.flag("keep-git-dir") == "true", heredocs, state.config.get("User") or "", git)
        flags = "".join(f"--{n}={v} " for n, v in (("from", inst.flag("from")), ("chown", chown),
                                                    ("chmod", chmod)) if v)
        shown = f"{kind} {flags}" + " ".join([*shown_srcs, *(f"<<{h[0]}" for h in heredocs), dest])
        # history as BuildKit writes it: --parents, --chown and --chmod, never --from
        hflags = ("--parents " if op.parents else "") + "".join(f"--{n}={v} " for n, v in (("chown", chown),
                                                                                          ("chmod", chmod)) if v)
        created_by = f"{kind} {hflags}" + " ".join([*shown_srcs, *(f"<<{h[0]}" for h in heredocs), dest])
        self.add(stage, Node(op, origin, shown, created_by + " # buildkit"))

    on_copy = _copy
    on_add = _copy


def _copy_config(config: Mapping[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(dict(config))


def _single_heredoc(command: str) -> bool:
    """BuildKit's MustParseHeredoc on a RUN's whole command: is it just one heredoc word?"""
    from grammar.heredoc import parse_opener

    try:
        return parse_opener(command) is not None
    except ExpansionError:
        return False


def _flag_error(message: str, origin: Origin, hint: str | None = None) -> InvalidFlagError:
    return InvalidFlagError(message, filename=origin.filename, line=origin.line, column=origin.column,
                            source_line=origin.text, hint=hint)


def _ssh_defaults(mounts: list[RunMount]) -> tuple[RunMount, ...]:
    """BuildKit's defaults for ssh mounts: id `default`, target /run/buildkit/ssh_agent.N (N counts ssh mounts)."""
    from dataclasses import replace

    out, n = [], 0
    for m in mounts:
        if m.type == "ssh":
            m = replace(m, id=m.id or "default", target=m.target or f"/run/buildkit/ssh_agent.{n}")
            n += 1
        out.append(m)
    return tuple(out)


def _mount_options(spec: str) -> dict[str, str]:
    """`type=cache,target=/x,ro` -> {"type": "cache", "target": "/x", "ro": ""} (csv, quotes allowed)."""
    import csv

    out: dict[str, str] = {}
    for field_ in next(csv.reader([spec])) if spec else []:
        key, eq, value = field_.partition("=")
        out[key.strip().lower()] = value if eq else ""
    return out


def _duration_ns(text: str, origin: Origin) -> int:
    """A Go duration (`30s`, `1m30s`) in nanoseconds."""
    from runtime.durations import parse

    ns = parse(text)
    if ns is None:
        raise _flag_error(f"invalid duration {text!r}", origin)
    return ns


def _normalized_platform(text: str, origin: Origin) -> str:
    """`FROM --platform=` as containerd's platforms.Parse reads it, normalised (`linux/arm64/v8` is
    linux/arm64); an unparsable one is an error at the FROM, as in docker build."""
    from builder.oci.platform import PlatformError, format_platform, parse

    try:
        return format_platform(parse(text))
    except PlatformError:
        raise _flag_error(f"failed to parse platform {text}: expected os[/arch[/variant]] "
                          "(linux/amd64, linux/arm64/v8)", origin) from None


_SIGNALS = frozenset(
    "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS "
    "TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX".split()
    + [f"RTMIN+{i}" for i in range(1, 16)] + [f"RTMAX-{i}" for i in range(1, 15)])


def _is_signal(text: str) -> bool:
    """What STOPSIGNAL accepts (moby's ParseSignal): a non-zero number or a Linux signal name,
    with or without SIG, in any case."""
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text) != 0
    name = text.upper()
    return (name[3:] if name.startswith("SIG") else name) in _SIGNALS


def _go_duration(ns: int) -> str:
    """Go's time.Duration String(): 0s, 500ms, 1.5s, 1m30s, 1h0m0s."""
    from runtime.durations import text

    return text(ns)


def _expand_port(port: str, origin: Origin) -> list[str]:
    """`80`, `80/udp`, `8000-8002/tcp` -> ["80/tcp"], ..."""
    num, _, proto = port.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise _flag_error(f"invalid protocol {proto!r} in EXPOSE {port}", origin)
    lo, _, hi = num.partition("-")
    try:
        start, end = int(lo), int(hi or lo)
    except ValueError:
        raise _flag_error(f"invalid port {port!r} in EXPOSE", origin) from None
    if not (0 < start <= end <= 65535):
        raise _flag_error(f"invalid port range {port!r} in EXPOSE", origin)
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def convert(df: ast.Dockerfile, options: Options, resolve_image: ResolveImage) -> BuildGraph:
    """Convert a parsed Dockerfile into the graph of the stages the target needs."""
    return Converter(df, options, resolve_image).convert()
