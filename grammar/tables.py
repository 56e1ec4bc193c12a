"""Build the LALR(1) tables of grammar/dockerfile.lark with Lark, and write grammar/_tables.json.

Lark is imported only here. `grammar/_tables.json` is generated from the grammar and committed
(like Lark's standalone parsers), so that parsing, and `pybuild parse`, never pay for importing
Lark; it records the grammar text, and when the grammar changes without a regeneration the
parser builds the tables with Lark at run time instead (tests/grammar check that the committed
tables are current). Regenerate with:

    python3 -m grammar.tables
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

GRAMMAR = Path(__file__).with_name("dockerfile.lark")
OUTPUT = Path(__file__).with_name("_tables.json")


def grammar_text() -> str:
    return GRAMMAR.read_text(encoding="utf-8")


def build() -> dict[str, Any]:
    """Compile the grammar with Lark: {grammar, start, end, rules: [(name, size)], states}.

    states[state][terminal or rule name] = [1, next state] for a shift or goto,
    [0, rule index] for a reduction (states is a list indexed by state number).
    """
    from lark import Lark
    from lark.lexer import Lexer, LexerState, Token
    from lark.parsers.lalr_analysis import Shift

    class ExternalLexer(Lexer):  # tokens come from grammar/lexer.py, not from Lark
        def __init__(self, conf: object) -> None:
            pass

        def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:  # pragma: no cover
            # never used to lex
            raise NotImplementedError

    text = grammar_text()
    lark = Lark(text, parser="lalr", lexer=ExternalLexer, start="start",
                maybe_placeholders=False)
    table = lark.parser.parser.parser.parse_table
    rules = list(lark.rules)
    index = {rule: i for i, rule in enumerate(rules)}
    states: list[dict[str, list[int]]] = [{} for _ in table.states]
    for state, acts in table.states.items():
        states[state] = {str(sym): [1, arg] if action is Shift else [0, index[arg]]
                         for sym, (action, arg) in acts.items()}
    return {
        "grammar": text,
        "start": table.start_states["start"],
        "end": table.end_states["start"],
        "rules": [[str(r.origin.name), len(r.expansion)] for r in rules],
        "states": states,
    }


def canonical(tables: dict[str, Any]) -> tuple:
    """The automaton with states renumbered in breadth-first order from the start state and
    reductions named by (rule, size): equal for equivalent tables (Lark numbers states
    differently from run to run)."""
    states, rules = tables["states"], tables["rules"]
    order = {tables["start"]: 0}
    queue = [tables["start"]]
    while queue:
        state = queue.pop(0)
        for sym in sorted(states[state]):
            shift, arg = states[state][sym]
            if shift and arg not in order:
                order[arg] = len(order)
                queue.append(arg)
    canon = {
        order[state]: {sym: (1, order[arg]) if shift else (0, tuple(rules[arg]))
                       for sym, (shift, arg) in acts.items()}
        for state, acts in enumerate(states) if state in order
    }
    return tables["grammar"], order.get(tables["end"]), canon


def write(tables: dict[str, Any]) -> None:
    OUTPUT.write_text(json.dumps(tables, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write(build())
    print(f"wrote {OUTPUT}")
