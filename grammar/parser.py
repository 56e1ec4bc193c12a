"""The LALR parser: tables built by Lark from grammar/dockerfile.lark, driven over our tokens.

Lark compiles the grammar into LALR(1) tables once per process (and caches the analysis on
disk, `cache=True`). `Parser.parse` runs the shift/reduce loop over the tokens of the line
scanner (grammar/lexer.py) and calls one `ToAst` method per reduced instruction rule; the
repetition rules Lark generates for `*` just collect their items. This is Lark's own LALR loop
without its parse-tree builder, which we do not need: it makes parsing about twice as fast.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable

from lark import Lark, Token
from lark.exceptions import UnexpectedToken
from lark.parsers.lalr_analysis import Shift

from grammar.lexer import DockerfileLexer


class Parser:
    """Shift/reduce over Lark's tables; `callbacks` maps a rule name to a function of its children."""

    def __init__(self, lark: Lark, transformer: object) -> None:
        table = lark.parser.parser.parser.parse_table
        self.states = table.states
        self.start_state = table.start_states["start"]
        self.end_state = table.end_states["start"]
        self.reduce: dict[Any, tuple[str, int, Callable[[list], Any]]] = {}
        for rule in lark.rules:
            name = rule.origin.name
            if name.startswith("__"):  # `x*` -> list of items (tokens whose name starts with _ dropped)
                fn = _collect
            elif name == "start":
                fn = _start(getattr(transformer, "start"))
            else:
                fn = getattr(transformer, name)
            self.reduce[rule] = (name, len(rule.expansion), fn)

    def parse(self, tokens: Iterable[Token]) -> Any:
        states, reduce = self.states, self.reduce
        state_stack = [self.start_state]
        values: list = []
        end = Token("$END", "")
        for tok in _with_end(tokens, end):
            while True:
                try:
                    action, arg = states[state_stack[-1]][tok.type]
                except KeyError:
                    expected = {s for s in states[state_stack[-1]] if s.isupper()}
                    raise UnexpectedToken(tok, expected) from None
                if action is Shift:
                    state_stack.append(arg)
                    values.append(tok)
                    break
                name, size, fn = reduce[arg]
                if size:
                    children = values[-size:]
                    del state_stack[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(fn(children))
                state_stack.append(states[state_stack[-1]][name][1])
                if tok is end and state_stack[-1] == self.end_state:
                    return values[-1]


def _with_end(tokens: Iterable[Token], end: Token) -> Iterable[Token]:
    yield from tokens
    yield end


class _Items(list):
    """The items collected by a repetition rule."""


def _collect(children: list) -> _Items:
    if children and type(children[0]) is _Items:
        items = children[0]
        rest = children[1:]
    else:
        items, rest = _Items(), children
    items.extend(c for c in rest if not (isinstance(c, Token) and c.type.startswith("_")))
    return items


def _start(fn: Callable[[list], Any]) -> Callable[[list], Any]:
    def start(children: list) -> Any:
        flat: list = []
        for c in children:
            flat.extend(c) if type(c) is _Items else flat.append(c)
        return fn(flat)
    return start


@lru_cache(maxsize=None)
def get_parser(transformer_cls: type) -> Parser:
    """The parser for the Dockerfile grammar, built once per process."""
    lark = Lark.open("dockerfile.lark", rel_to=__file__, parser="lalr", lexer=DockerfileLexer,
                     start="start", maybe_placeholders=False, cache=True)
    return Parser(lark, transformer_cls())
