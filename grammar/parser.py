"""Builds the LALR parser once per process (grammar/dockerfile.lark + the line scanner)."""

from __future__ import annotations

from functools import lru_cache

from lark import Lark

from grammar.lexer import DockerfileLexer


@lru_cache(maxsize=None)
def get_parser(transformer_cls: type) -> Lark:
    """The LALR parser with `transformer_cls` applied while parsing (no parse tree is built)."""
    return Lark.open("dockerfile.lark", rel_to=__file__, parser="lalr", lexer=DockerfileLexer,
                     transformer=transformer_cls(), start="start", maybe_placeholders=False)
