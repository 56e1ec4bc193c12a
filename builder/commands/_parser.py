"""The argument parser every command gets: argparse with docker's (cobra's) errors. Imported only
once a command line is parsed (the replay of a no-op rebuild needs no argparse)."""

from __future__ import annotations

import argparse
import os
import sys

from builder.errors import UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs the cached no-op rebuild ~2 ms
if TYPE_CHECKING:
    from typing import Any, NoReturn, Sequence


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size()` gives it: $COLUMNS, stdout's terminal, or 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Parser(argparse.ArgumentParser):
    """argparse with docker's (cobra's) errors: `unknown flag: --x`, `flag needs an argument: --tag`,
    `invalid argument "x" for "--progress" flag: ...`, `"pybuild build" requires 1 argument`; no
    abbreviated flags (docker has none)."""

    _value = ""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        flags = [a for a in extras if a.startswith("-") and a != "-"]
        if flags:
            flag = flags[0].split("=", 1)[0]
            raise UsageError(f"unknown flag: {flag}" if flag.startswith("--") else
                             f"unknown shorthand flag: {flag[1:2]!r} in {flags[0]}", self.prog, 125)
        if extras:
            most = sum(1 for a in self._positionals._group_actions if a.nargs not in ("+", "*", argparse.REMAINDER))
            raise UsageError(f"{self.prog.split()[0]}: \"{self.prog}\" accepts at most {most} argument{'s' if most != 1 else ''}; "
                             f"got {' '.join(extras)!r} too", self.prog, 1)
        return ns

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter per add_argument, each asking shutil (which imports bz2 and lzma)
        # for the terminal's width: the same width, without those imports on every command's path
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        self._value = arg_string
        return super()._get_value(action, arg_string)  # type: ignore[misc]

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required:"):
            names = message.split(":", 1)[1].strip().split(", ")
            atleast = any(a.nargs == "+" for a in self._positionals._group_actions)
            raise UsageError(f"{self.prog.split()[0]}: \"{self.prog}\" requires {'at least ' if atleast else ''}{len(names)} "
                             f"argument{'s' if len(names) != 1 else ''} ({', '.join(names)})", self.prog, 1)
        head, sep, detail = message.partition(": ")
        if head.startswith("argument ") and sep:
            flag = head[len("argument "):].split("/")[-1]
            if detail.startswith("expected ") and "argument" in detail:
                raise UsageError(f"flag needs an argument: {flag}", self.prog, 125)
            if detail.startswith("invalid choice:"):
                choices = detail.split("(choose from", 1)[-1].rstrip(")").replace("'", "").strip()
                detail = f"choose from {choices}"
            elif detail.startswith("invalid ") and " value: " in detail:
                detail = f"not a valid {detail.split()[1]}"
            raise UsageError(f'invalid argument "{self._value}" for "{flag}" flag: {detail}', self.prog, 125)
        raise UsageError(message, self.prog, 125)
