"""The walk over a parsed Dockerfile that finds build-check violations, as BuildKit finds them.

File-level rules (stage names, instruction casing, MAINTAINER, empty continuation lines, the
FROM lines' ARGs and platforms) look at every stage; the rules BuildKit runs while it dispatches
instructions (UndefinedVar, JSONArgsRecommended, WorkdirRelativePath, LegacyKeyValueFormat,
SecretsUsedInArgOrEnv, MultipleInstructionsDisallowed, Expose*, CopyIgnoredFile,
InvalidBaseImagePlatform) look at the stages a build reaches (`reachable`; None: all of them, as
`--check` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from builder.build.checks.config import CheckConfig, instruction_config, parse_check_options
from builder.build.checks.rules import RULES, Rule
from grammar import ast

__all__ = ["BaseInfo", "CheckResult", "Violation", "lint", "suggest"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RESERVED = ("context", "scratch")
_SECRET = re.compile(r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)")
_NOT_SECRET = re.compile(r"(?i)(?:_|^)(?:public|file|version)(?:_|$)")
_DIRECTIVE_LINE = re.compile(r"#\s*(syntax|escape|check)\s*=", re.I)


@dataclass(frozen=True, slots=True)
class Violation:
    """One warning: the rule, its message (`detail`) and the lines it points at."""

    rule: Rule
    detail: str
    filename: str
    line: int
    end_line: int
    column: int = 1

    def short(self) -> str:
        """BuildKit's one-line form: `Rule: message (line N)`."""
        return f"{self.rule.name}: {self.detail} (line {self.line})"


@dataclass(frozen=True, slots=True)
class BaseInfo:
    """What the checks need of a base image: its environment, SHELL and platform."""

    env: Mapping[str, str]
    shell: tuple[str, ...] | None = None
    platform: str = ""


@dataclass
class CheckResult:
    """The violations in source order, the configuration used, and the error `error=true` makes."""

    violations: list[Violation]
    config: CheckConfig
    filename: str
    source: str

    @property
    def error(self) -> str | None:
        if not (self.config.error and self.violations):
            return None
        names = list(dict.fromkeys(v.rule.name for v in self.violations))
        return f"lint violation found for rules: {', '.join(names)}"


def suggest(word: str, options: list[str] | tuple[str, ...], case_sensitive: bool = True) -> str:
    """BuildKit's suggest.Search: the option within Levenshtein distance 2 (the first closest), or ""."""
    val = word if case_sensitive else word.lower()
    best, best_dist = "", 3
    for opt in options:
        cmp = opt if case_sensitive else opt.lower()
        if cmp == val:
            return ""
        dist = _levenshtein(val, cmp)
        if dist < best_dist:
            best, best_dist = opt, dist
    return best


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class _Recorder(Mapping[str, str]):
    """An environment that remembers which names an expansion found and which it missed."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.matched: list[str] = []
        self.unmatched: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.env:
            self.matched.append(key)
            return self.env[key]
        if key not in self.unmatched:
            self.unmatched.append(key)
        return default

    def __getitem__(self, key: str) -> str:
        return self.env[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


@dataclass
class _StageState:
    env: dict[str, str]
    declared: set[str] = field(default_factory=set)
    shell: tuple[str, ...] | None = None
    workdir_set: bool = False
    known: bool = True  # False: the base image's environment is unknown (UndefinedVar stays quiet)


class _Linter:
    def __init__(self, df: ast.Dockerfile, text: str, config: CheckConfig, build_args: Mapping[str, str],
                 platform_args: Mapping[str, str], base_image: Callable[[str, str], BaseInfo | None] | None,
                 ignore: Any) -> None:
        self.df, self.config, self.build_args = df, config, build_args
        self.platform_args, self.base_image, self.ignore = platform_args, base_image, ignore
        self.lines = text.splitlines()
        self.found: list[Violation] = []
        self._directive_lines = self._leading_directives()

    # -- reporting -----------------------------------------------------------------------------
    def comments_above(self, inst: ast.Instruction, previous_end: int) -> list[str]:
        """The comments BuildKit attaches to an instruction: those since the previous one, an
        empty `#` starting over, parser directives left out."""
        comments: list[str] = []
        for ln in range(previous_end + 1, inst.range.start_line):
            line = self.lines[ln - 1].strip() if ln - 1 < len(self.lines) else ""
            if not line.startswith("#") or ln in self._directive_lines:
                continue
            comments = [] if not line[1:].strip() else comments + [line]
        return comments

    def _leading_directives(self) -> set[int]:
        out: set[int] = set()
        for i, line in enumerate(self.lines, 1):
            if not _DIRECTIVE_LINE.match(line.strip()):
                break
            out.add(i)
        return out

    def report(self, cfg: CheckConfig, name: str, inst: ast.Instruction, *words: str,
               line: tuple[int, int] | None = None) -> None:
        rule = RULES[name]
        if not cfg.enabled(rule.name, rule.experimental):
            return
        start, end = line or (inst.range.start_line, inst.range.end_line)
        self.found.append(Violation(rule, rule.format(*words), self.df.filename, start, end, inst.range.start_col))

    # -- expansion -----------------------------------------------------------------------------
    def expand(self, word: str, env: Mapping[str, str]) -> tuple[str, _Recorder]:
        from grammar import ExpansionError, expand

        rec = _Recorder(env)
        try:
            return expand(word, rec, self.df.escape), rec
        except ExpansionError:
            return "", rec

    # -- the walk ------------------------------------------------------------------------------
    def run(self, reachable: set[int] | None) -> list[Violation]:
        configs: dict[int, CheckConfig] = {}
        previous_end = 0
        for inst in self.df.instructions:
            configs[id(inst)] = instruction_config(self.config, self.comments_above(inst, previous_end))
            previous_end = inst.range.end_line
            self.empty_continuation(inst, configs[id(inst)])
        self.file_rules()
        globals_, declared_meta = self.meta_args()
        states: dict[int, _StageState] = {}
        names: dict[str, int] = {}
        for st in self.df.stages:
            cfg = configs[id(st.base)]
            base = self.from_rules(st, cfg, globals_, declared_meta)
            for inst in st.instructions:
                if isinstance(inst, ast.Maintainer):
                    self.report(configs[id(inst)], "MaintainerDeprecated", inst)
            if reachable is None or st.index in reachable:
                parent = names.get(base.lower())
                state = self.start_state(st, base, states.get(parent) if parent is not None else None)
                self.dispatch_stage(st, state, configs, globals_)
                states[st.index] = state
            if st.name:
                names[st.name.lower()] = st.index
        self.found.sort(key=lambda v: (v.line, v.detail))
        return self.found

    def empty_continuation(self, inst: ast.Instruction, cfg: CheckConfig) -> None:
        """NoEmptyContinuation: a blank line inside a continued instruction (heredoc bodies aside)."""
        esc = self.df.escape
        ln = inst.range.start_line
        empty = False
        while ln - 1 < len(self.lines):
            text = self.lines[ln - 1]
            stripped = text.strip()
            if ln != inst.range.start_line and (not stripped or stripped.startswith("#")):
                empty = empty or not stripped
                ln += 1
                continue
            if not text.rstrip().endswith(esc):
                break
            ln += 1
        if empty:
            self.report(cfg, "NoEmptyContinuation", inst, line=(ln, ln))

    def file_rules(self) -> None:
        lower = upper = 0
        commands: list[tuple[str, ast.Instruction]] = []
        for st in self.df.stages:
            for inst in (st.base, *st.instructions):
                word = inst.raw.lstrip().split(None, 1)[0] if inst.raw.strip() else inst.keyword
                commands.append((word, inst))
                if word == word.lower():
                    lower += 1
                elif word == word.upper():
                    upper += 1
        majority_lower = lower > upper
        for word, inst in commands:
            if majority_lower and word != word.lower():
                self.report(self.config, "ConsistentInstructionCasing", inst, word, "lowercase")
            elif not majority_lower and word != word.upper():
                self.report(self.config, "ConsistentInstructionCasing", inst, word, "uppercase")
        seen: set[str] = set()
        for st in self.df.stages:
            name = (st.base.alias or "").lower()
            if not name:
                continue
            if name in _RESERVED:
                self.report(self.config, "ReservedStageName", st.base, name)
            if name in seen:
                self.report(self.config, "DuplicateStageName", st.base, name)
            seen.add(name)

    def meta_args(self) -> tuple[dict[str, str], set[str]]:
        """The global scope of FROM lines: platform ARGs, then each meta ARG's value."""
        env = dict(self.platform_args)
        declared: set[str] = set()
        for arg in self.df.meta_args:
            for name, default in arg.pairs:
                declared.add(name)
                if name in self.build_args:
                    env[name] = self.build_args[name]
                elif default is not None:
                    env[name] = self.expand(default, env)[0]
        return env, declared

    def from_rules(self, st: ast.Stage, cfg: CheckConfig, globals_: dict[str, str], declared: set[str]) -> str:
        """StageNameCasing, FromAsCasing, UndefinedArgInFrom, RedundantTargetPlatform,
        FromPlatformFlagConstDisallowed, InvalidDefaultArgInFrom; returns the expanded base name."""
        frm = st.base
        keyword = frm.raw.lstrip().split(None, 1)[0]
        if len(frm.args) == 3:
            if frm.args[2] != frm.args[2].lower():
                self.report(cfg, "StageNameCasing", frm, frm.args[2])
            as_word = frm.args[1]
            if keyword == keyword.lower() and as_word != as_word.lower() or (
                    keyword == keyword.upper() and keyword != keyword.lower() and as_word != as_word.upper()):
                self.report(cfg, "FromAsCasing", frm, as_word, keyword)
        keys = sorted(set(declared) | set(self.platform_args))
        base, rec = self.expand(frm.image, globals_)
        for name in rec.unmatched:
            if name not in keys:
                hint = suggest(name, keys)
                self.report(cfg, "UndefinedArgInFrom", frm, name, f" (did you mean {hint}?)" if hint else "")
        if frm.platform:
            plat, prec = self.expand(frm.platform, globals_)
            for name in prec.unmatched:
                if name not in keys:
                    hint = suggest(name, keys)
                    self.report(cfg, "UndefinedArgInFrom", frm, name, f" (did you mean {hint}?)" if hint else "")
            if (set(prec.matched) == {"TARGETPLATFORM"} and not prec.unmatched
                    and plat == globals_.get("TARGETPLATFORM")):
                self.report(cfg, "RedundantTargetPlatform", frm, frm.platform)
            if not prec.matched and not prec.unmatched:
                self.const_platform(cfg, frm, plat, (st.name or "").lower())
        self.default_base(cfg, frm)
        return base

    def const_platform(self, cfg: CheckConfig, frm: ast.From, plat: str, stage_name: str) -> None:
        from builder.errors import BuildError
        from builder.oci.platform import parse

        try:
            p = parse(plat)
        except BuildError:
            return
        if p.os in stage_name or p.architecture in stage_name:
            return
        self.report(cfg, "FromPlatformFlagConstDisallowed", frm, plat)

    def default_base(self, cfg: CheckConfig, frm: ast.From) -> None:
        """InvalidDefaultArgInFrom: the base name with the meta ARGs' defaults alone."""
        from builder.errors import BuildError
        from builder.oci.reference import parse_reference

        env = dict(self.platform_args)
        for arg in self.df.meta_args:
            for name, default in arg.pairs:
                if default is not None:
                    env[name] = self.expand(default, env)[0]
        from grammar import ExpansionError, expand

        try:
            name = expand(frm.image, env, self.df.escape)
        except ExpansionError:
            return
        try:
            parse_reference(name)
        except BuildError:
            self.report(cfg, "InvalidDefaultArgInFrom", frm, frm.image)

    # -- dispatch of one reachable stage -------------------------------------------------------
    def start_state(self, st: ast.Stage, base: str, parent: _StageState | None) -> _StageState:
        if parent is not None:
            return _StageState(dict(parent.env), set(parent.declared), parent.shell, parent.workdir_set, parent.known)
        info = None
        if base.lower() != "scratch" and self.base_image is not None and base:
            platform = self.expand(st.base.platform, self.platform_args)[0] if st.base.platform else ""
            info = self.base_image(base, platform)
            if info is not None and info.platform:
                self.base_platform(st, base, platform or self.platform_args.get("TARGETPLATFORM", ""), info.platform)
        env = dict(info.env) if info is not None else {}
        env.setdefault("PATH", DEFAULT_PATH)
        known = info is not None or self.base_image is None or base.lower() == "scratch"
        return _StageState(env, shell=info.shell if info is not None else None, known=known)

    def base_platform(self, st: ast.Stage, name: str, expected: str, actual: str) -> None:
        e, a = expected.split("/"), actual.split("/")
        if e[:2] != a[:2] and len(e) >= 2:
            self.report(self.config, "InvalidBaseImagePlatform", st.base, name, actual, expected)

    def dispatch_stage(self, st: ast.Stage, state: _StageState, configs: dict[int, CheckConfig],
                       globals_: Mapping[str, str]) -> None:
        used: dict[str, ast.Instruction] = {}
        for inst in st.instructions:
            cfg = configs[id(inst)]
            self.undefined_vars(cfg, inst, state)
            kw = inst.keyword.upper()
            if isinstance(inst, (ast.Cmd, ast.Entrypoint, ast.Healthcheck)):
                if kw in used:
                    self.report(cfg, "MultipleInstructionsDisallowed", inst, kw,
                                line=(used[kw].range.start_line, used[kw].range.end_line))
                used[kw] = inst
                if isinstance(inst, (ast.Cmd, ast.Entrypoint)) and isinstance(inst.command, ast.ShellForm) \
                        and not state.shell:
                    self.report(cfg, "JSONArgsRecommended", inst, kw)
            elif isinstance(inst, ast.Shell) and isinstance(inst.command, ast.ExecForm):
                state.shell = tuple(inst.command.args)
            elif isinstance(inst, ast.Workdir):
                path = self.expand(inst.path, state.env)[0]
                if not state.workdir_set and not path.startswith("/"):
                    self.report(cfg, "WorkdirRelativePath", inst, path)
                state.workdir_set = True
            elif isinstance(inst, (ast.Env, ast.Label)):
                words = inst.raw.strip().split(None, 2)
                if len(words) > 1 and "=" not in words[1]:  # `ENV key value`: the first word has no `=`
                    self.report(cfg, "LegacyKeyValueFormat", inst, kw)
                if isinstance(inst, ast.Env):
                    values = [(k, self.expand(v, state.env)[0]) for k, v in inst.pairs]
                    for k, v in values:
                        self.secret(cfg, inst, "ENV", k)
                        state.env[k] = v
            elif isinstance(inst, ast.Arg):
                for name, default in inst.pairs:
                    self.secret(cfg, inst, "ARG", name)
                    value = self.build_args.get(name)
                    if value is None and default is not None:
                        value = self.expand(default, state.env)[0]
                    elif value is None and name in globals_ and name not in self.platform_args:
                        value = globals_[name]
                    state.declared.add(name)
                    if value is not None:
                        state.env[name] = value
            elif isinstance(inst, ast.Expose):
                for port in inst.ports:
                    self.expose(cfg, inst, self.expand(port, state.env)[0])
            elif isinstance(inst, (ast.Copy, ast.Add)):
                self.copy_sources(cfg, inst, state)

    def secret(self, cfg: CheckConfig, inst: ast.Instruction, kind: str, key: str) -> None:
        if _SECRET.search(key) and not _NOT_SECRET.search(key):
            self.report(cfg, "SecretsUsedInArgOrEnv", inst, kind, key)

    def expose(self, cfg: CheckConfig, inst: ast.Instruction, raw: str) -> None:
        parts = raw.split(":")
        ip = host = ""
        if len(parts) == 2:
            host = parts[0]
        elif len(parts) >= 3:
            ip, host = ":".join(parts[:-2]), parts[-2]
        _port, _, proto = parts[-1].partition("/")
        if proto != proto.lower():
            self.report(cfg, "ExposeProtoCasing", inst, raw)
        if ip or host:
            self.report(cfg, "ExposeInvalidFormat", inst, raw)

    def copy_sources(self, cfg: CheckConfig, inst: ast.Copy | ast.Add, state: _StageState) -> None:
        """CopyIgnoredFile: a context source that .dockerignore excludes (none when it re-includes)."""
        import posixpath

        if self.ignore is None or not self.ignore or getattr(self.ignore, "has_exceptions", False):
            return
        if isinstance(inst, ast.Copy) and inst.flag("from"):
            return
        what = "Add" if isinstance(inst, ast.Add) else "Copy"
        for src in inst.sources:
            if inst.heredocs and src.startswith("<<"):
                continue
            src = self.expand(src, state.env)[0]
            if "://" in src or src.startswith("git@"):
                continue
            clean = posixpath.normpath(src.replace("\\", "/")) if src else "."
            clean = clean.lstrip("/") or "/" if clean != "/" else "/"
            if clean in (".", "/"):
                if any(p in ("*", "**", "**/*") for p in self.ignore.patterns):
                    self.report(cfg, "CopyIgnoredFile", inst, what, clean)
                continue
            if self.ignore.matches(clean):
                self.report(cfg, "CopyIgnoredFile", inst, what, clean)

    def undefined_vars(self, cfg: CheckConfig, inst: ast.Instruction, state: _StageState) -> None:
        """UndefinedVar over the words BuildKit expands for this instruction."""
        if not state.known:
            return
        words: list[str] = []
        if isinstance(inst, (ast.Env, ast.Label)):
            words = [w for pair in inst.pairs for w in pair]
        elif isinstance(inst, (ast.Copy, ast.Add)):
            words = [s for s in inst.sources if not (inst.heredocs and s.startswith("<<"))] + [inst.dest]
            words += [v for v in (inst.flag("chown"), inst.flag("chmod")) if v]
        elif isinstance(inst, ast.Expose):
            words = list(inst.ports)
        elif isinstance(inst, ast.User):
            words = [inst.user]
        elif isinstance(inst, ast.Volume):
            words = list(inst.paths)
        elif isinstance(inst, ast.Workdir):
            words = [inst.path]
        elif isinstance(inst, ast.Stopsignal):
            words = [inst.signal]
        elif isinstance(inst, ast.Arg):
            words = [d for n, d in inst.pairs if d is not None and n not in self.build_args]
        reported: set[str] = set()
        for word in words:
            _, rec = self.expand(word, state.env)
            for name in rec.unmatched:
                if name in state.declared or name in reported:
                    continue
                reported.add(name)
                hint = suggest(name, list(state.env))
                self.report(cfg, "UndefinedVar", inst, name, f" (did you mean ${hint}?)" if hint else "")


def lint(df: ast.Dockerfile, text: str, *, build_args: Mapping[str, str] | None = None,
         reachable: set[int] | None = None, target_platform: str = "", build_platform: str = "",
         base_image: Callable[[str, str], BaseInfo | None] | None = None, ignore: Any = None) -> CheckResult:
    """Run the checks over `df` (parsed from `text`). `build_args` may hold BUILDKIT_DOCKERFILE_CHECK,
    which replaces the `# check=` directive; `base_image(ref, platform)` describes a base image
    (None: unknown, only PATH is then defined); `ignore` is the context's .dockerignore matcher."""
    build_args = dict(build_args or {})
    option = build_args.get("BUILDKIT_DOCKERFILE_CHECK")
    config = parse_check_options(option if option is not None else (df.directive("check") or ""))
    from builder.build.convert import host_platform
    from builder.oci.platform import platform_args

    host = host_platform()
    plat_args = platform_args(target_platform or host, build_platform or host)
    linter = _Linter(df, text, config, build_args, plat_args, base_image, ignore)
    return CheckResult(linter.run(reachable), config, df.filename, text)
