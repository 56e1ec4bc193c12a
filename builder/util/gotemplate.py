"""The subset of Go's text/template that `docker ... --format` users write:

    {{.Field}} {{.Config.Env}} {{json .}} {{json .Config}} {{index .Labels "k"}} {{index .RepoTags 0}}
    {{range .Config.Env}}{{.}} {{end}} {{if .X}}..{{else}}..{{end}} {{join .Names ","}}
    {{upper .X}} {{lower .X}} {{title .X}} {{len .X}} {{printf "%s:%d" .A .B}} {{.X | json}} {{- trims -}}
    table {{.Repository}}\\t{{.Tag}}     (a header row, columns aligned as docker's tabwriter does)

Values print as Go prints them: a list as `[a b]`, a map as `map[k:v]` (keys sorted), nothing as
`<no value>`, booleans as true/false. A mistake is a `TemplateError` naming the template and where.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping, Sequence

from builder.errors import BuildError

__all__ = ["TemplateError", "Template", "render_rows"]


class TemplateError(BuildError):
    """A --format template docker would also refuse."""

    exit_code = 1


_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*|\.[A-Za-z0-9_.]*|[A-Za-z_][A-Za-z0-9_]*|-?\d+|\||\(|\)')


def go_str(value: Any) -> str:
    """A value printed as Go's fmt `%v` prints it."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _printf(fmt: str, *args: Any) -> str:
    out, i = [], 0
    it = iter(args)
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
            elif verb == "q":
                out.append(json.dumps(go_str(next(it, ""))))
            elif verb == "d":
                out.append(str(int(next(it, 0))))
            else:
                out.append(go_str(next(it, None)))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _index(value: Any, *keys: Any) -> Any:
    for k in keys:
        try:
            value = value[k] if not isinstance(value, Mapping) else value.get(k)
        except (IndexError, TypeError, KeyError):
            raise TemplateError(f"error calling index: index out of range: {k}") from None
    return value


FUNCS: dict[str, Callable[..., Any]] = {
    "json": lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False),
    "index": _index,
    "join": lambda v, sep: sep.join(go_str(x) for x in (v or [])),
    "upper": lambda v: go_str(v).upper(),
    "lower": lambda v: go_str(v).lower(),
    "title": lambda v: go_str(v).title(),
    "len": lambda v: len(v or []),
    "printf": _printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "truncate": lambda v, n: go_str(v)[: int(n)],
    "pad": lambda v, left, right: " " * int(left) + go_str(v) + " " * int(right),
    "split": lambda v, sep: go_str(v).split(sep),
}


class Template:
    """A parsed template; `render(data)` fills it. `table` says whether it began with `table`."""

    def __init__(self, text: str) -> None:
        self.source = text
        self.table = text.startswith("table")
        body = text[len("table"):].lstrip() if self.table else text
        body = body.replace("\\t", "\t").replace("\\n", "\n")
        self.nodes = self._parse(self._lex(body))

    # -- parsing -------------------------------------------------------------------------------
    def _lex(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pos = 0
        for m in _ACTION.finditer(text):
            lit = text[pos:m.start()]
            if m.group(1):
                lit = lit.rstrip()
            if out and out[-1][0] == "trim":
                lit = lit.lstrip()
                out.pop()
            if lit:
                out.append(("text", lit))
            out.append(("action", m.group(2)))
            if m.group(3):
                out.append(("trim", ""))
            pos = m.end()
        rest = text[pos:]
        if out and out[-1][0] == "trim":
            rest = rest.lstrip()
            out.pop()
        if "{{" in rest:
            raise TemplateError(f"template: {self.source!r}: unclosed action")
        if rest:
            out.append(("text", rest))
        return out

    def _parse(self, items: list[tuple[str, str]]) -> list[Any]:
        stack: list[tuple[list[Any], Any]] = []
        nodes: list[Any] = []
        for kind, value in items:
            if kind == "text":
                nodes.append(("text", value))
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in ("range", "if", "with"):
                block: list[Any] = [word, value[len(word):].strip(), [], []]
                nodes.append(block)
                stack.append((nodes, block))
                nodes = block[2]
            elif word == "else":
                if not stack:
                    raise TemplateError(f"template: {self.source!r}: unexpected {{{{else}}}}")
                nodes = stack[-1][1][3]
            elif word == "end":
                if not stack:
                    raise TemplateError(f"template: {self.source!r}: unexpected {{{{end}}}}")
                nodes = stack.pop()[0]
            elif value.startswith("/*"):
                continue
            else:
                nodes.append(("expr", value))
        if stack:
            raise TemplateError(f"template: {self.source!r}: unexpected EOF (a {{{{{stack[-1][1][0]}}}}} without {{{{end}}}})")
        return nodes

    # -- evaluation ----------------------------------------------------------------------------
    def render(self, data: Any) -> str:
        return "".join(self._run(self.nodes, data))

    def _run(self, nodes: list[Any], dot: Any) -> list[str]:
        out: list[str] = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "expr":
                out.append(go_str(self._pipeline(node[1], dot)))
            else:
                kind, expr, body, other = node
                value = self._pipeline(expr, dot)
                if kind == "range":
                    items = list(value.values()) if isinstance(value, Mapping) else list(value or [])
                    if items:
                        for item in items:
                            out += self._run(body, item)
                    else:
                        out += self._run(other, dot)
                elif kind == "with":
                    out += self._run(body, value) if value else self._run(other, dot)
                else:
                    out += self._run(body, dot) if value else self._run(other, dot)
        return out

    def _pipeline(self, expr: str, dot: Any) -> Any:
        tokens = _TOKEN.findall(expr)
        if not tokens:
            raise TemplateError(f"template: {self.source!r}: missing value for command")
        stages: list[list[str]] = [[]]
        for t in tokens:
            if t == "|":
                stages.append([])
            else:
                stages[-1].append(t)
        value: Any = _NONE
        for stage in stages:
            value = self._command(stage, dot, value)
        return value

    def _command(self, words: Sequence[str], dot: Any, piped: Any) -> Any:
        if not words:
            raise TemplateError(f"template: {self.source!r}: missing command")
        head, *args = words
        if head in FUNCS:
            values = [self._operand(a, dot) for a in args if a not in ("(", ")")]
            if piped is not _NONE:
                values.append(piped)
            try:
                return FUNCS[head](*values)
            except TypeError:
                raise TemplateError(f"template: {self.source!r}: wrong number of args for {head}") from None
        if head[0].isalpha():
            raise TemplateError(f'template: {self.source!r}: function "{head}" not defined')
        return self._operand(head, dot)

    def _operand(self, word: str, dot: Any) -> Any:
        if word.startswith('"'):
            return json.loads(word)
        if word.startswith("`"):
            return word[1:-1]
        if word.lstrip("-").isdigit():
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word.startswith("."):
            value = dot
            for part in filter(None, word[1:].split(".")):
                if isinstance(value, Mapping):
                    value = value.get(part)  # a missing key is Go's zero value of a map: <no value>
                elif value is None:
                    return None
                else:
                    raise TemplateError(f"template: {self.source!r}: can't evaluate field {part} in type "
                                        f"{type(value).__name__}")
            return value
        raise TemplateError(f"template: {self.source!r}: unexpected {word!r}")


_NONE = object()


def _header(name: str, headers: Mapping[str, str]) -> str:
    return headers.get(name) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()


def render_rows(fmt: str, rows: Sequence[Any], headers: Mapping[str, str] | None = None) -> str:
    """Each row through the template, one per line; with `table`, a header row first and the
    tab-separated columns aligned (docker's tabwriter: 3 spaces between columns)."""
    tmpl = Template(fmt)
    lines = [tmpl.render(r) for r in rows]
    if not tmpl.table:
        return "".join(line + "\n" for line in lines)
    fields = re.findall(r"{{-?\s*\.([A-Za-z0-9_]+)[^}]*}}", tmpl.source)
    head_tmpl = tmpl.source[len("table"):].lstrip().replace("\\t", "\t")
    for f in fields:
        head_tmpl = re.sub(r"{{-?\s*\." + f + r"[^}]*}}", _header(f, headers or {}), head_tmpl, count=1)
    cells = [head_tmpl.split("\t")] + [line.split("\t") for line in lines]
    width = max(len(c) for c in cells)
    widths = [max((len(c[i]) for c in cells if i < len(c)), default=0) for i in range(width)]
    out = []
    for c in cells:
        out.append("   ".join(v.ljust(widths[i]) if i < len(c) - 1 else v for i, v in enumerate(c)).rstrip())
    return "".join(line + "\n" for line in out)
