"""Docker's shell-word lexer: `$VAR` expansion, quotes, escapes and word splitting.

A pure function of (word, env, escape). It follows BuildKit's `frontend/dockerfile/shell`
lexer rule for rule, including its errors and its quirks:

- `$name`, `${name}`, and the modifiers `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//`;
  an unset variable expands to "" (no error), `$1`/`$@`/... are names too;
- single quotes keep everything literally; in double quotes the escape character escapes only
  `"`, `$` and itself, elsewhere it escapes any character; an escape at the end is dropped;
- `<<` followed by blanks stays glued to the next word (heredoc words);
- `process_words` splits on whitespace *after* expansion, except inside quotes; an empty
  quoted string alone makes no word (Docker does the same);
- Go's scanner skips a byte-order mark that starts the word (or a `#`/`%`/`/` pattern);
- `${V//pat/repl}` replaces as Go's `Regexp.ReplaceAllString`: `$0`/`${0}` in the replacement is
  the match, `$$` is `$`, other `$names` are empty, and an empty match right after a match is
  not replaced (`${V//*/x}` gives one `x`); `${V/pat/repl}` inserts `repl` literally.
"""

from __future__ import annotations

import re
from typing import Mapping

from grammar.errors import ExpansionError

_EOF = ""
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0")


def go_isspace(ch: str) -> bool:
    """Go's `unicode.IsSpace`."""
    return ch in _GO_SPACE or (ch > "\xff" and ch.isspace())


def _is_special_param(ch: str) -> bool:
    return ch in "@*#?-$!0"


class _Words:
    """Collects words while a string is processed (Docker's wordsStruct)."""

    __slots__ = ("buf", "words", "in_word")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if go_isspace(ch):
            if self.in_word and any(self.buf):
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.buf.append(s)
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.buf and "".join(self.buf):
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


class Lexer:
    """One expansion run over `source` (BuildKit's shellWord). Options as in BuildKit's Lex."""

    def __init__(self, source: str, env: Mapping[str, str], escape: str = "\\", *,
                 raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset_env: bool = False, skip_process_quotes: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape character {escape!r}")
        self.src = source
        self.pos = 1 if source.startswith("\ufeff") else 0  # Go's text/scanner skips a leading BOM
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.skip_process_quotes = skip_process_quotes

    # scanner
    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else _EOF

    def next(self) -> str:
        if self.pos < len(self.src):
            self.pos += 1
            return self.src[self.pos - 1]
        return _EOF

    def run(self) -> tuple[str, list[str]]:
        try:
            return self.process_stop_on(_EOF, self.raw_escapes)
        except _LexError as exc:
            err = ExpansionError(f"failed to process {self.src!r}: {exc}", filename="", hint=exc.hint or _hint(str(exc)))
            err.word = self.src  # lets the builder put the caret on the word (not pickled)
            raise err from None

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._process_stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _process_stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        quotes = not self.skip_process_quotes
        while self.pos < len(self.src):
            ch = self.src[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(result), words.get_words()
            if ch == "$":
                tmp = self.process_dollar()
                result.append(tmp)
                words.add_string(tmp)
            elif ch == "<":
                tmp = self.process_possible_heredoc()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif quotes and ch == "'":
                tmp = self.process_single_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif quotes and ch == '"':
                tmp = self.process_double_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            else:
                self.pos += 1
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        result: list[str] = []
        ch = self.next()
        if self.raw_quotes:
            result.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        result: list[str] = []
        ch = self.next()
        if self.raw_quotes:
            result.append(ch)
        while True:
            nxt = self.peek()
            if nxt == _EOF:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if nxt == '"':
                ch = self.next()
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            if nxt == "$":
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                p = self.peek()
                if p == _EOF:
                    continue
                if p in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def process_dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if name == "":
                return "$"
            value = self.env.get(name)
            if value is None:
                return "$" + name if self.skip_unset_env else ""
            return value
        self.next()
        p = self.peek()
        if p == _EOF:
            raise _LexError("syntax error: missing '}'")
        if p in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        chs = ch
        null_is_unset = False
        if ch == "}":
            value = self.env.get(name)
            if value is None:
                return "${%s}" % name if self.skip_unset_env else ""
            return value
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
        if ch in ("+", "-", "?", "#", "%") and ch != _EOF or null_is_unset:
            raw = ch in ("#", "%")
            if null_is_unset and raw:
                raise _LexError(f"unsupported modifier ({chs}) in substitution")
            try:
                word, _ = self.process_stop_on("}", raw)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '}'") from None
                raise
            value = self.env.get(name)
            is_set = value is not None
            value = value or ""
            if self.skip_unset_env and not is_set:
                return "${%s%s%s}" % (name, chs, word)
            if ch == "-":
                return word if (not is_set or (null_is_unset and value == "")) else value
            if ch == "+":
                return "" if (not is_set or (null_is_unset and value == "")) else word
            if ch == "?":
                if not is_set or (null_is_unset and value == ""):
                    default = "is not allowed to be unset" if not is_set else "is not allowed to be empty"
                    raise _LexError(f"{name}: {word or default}", hint=f"give {name} a value: ARG {name}=... "
                                    f"(or --build-arg {name}=...), or ENV {name}=...")
                return value
            if ch in ("%", "#"):
                greedy = False
                if word[:1] == ch:
                    greedy, word = True, word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise _LexError(f"unsupported modifier ({chs}) in substitution")
        if ch == _EOF:  # `${name` (Go says "unsupported modifier (\ufffd)")
            raise _LexError("syntax error: missing '}'")
        if ch == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.process_stop_on("/", True)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.process_stop_on("}", True)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '}'") from None
                raise
            value = self.env.get(name)
            if self.skip_unset_env and value is None:
                return "${%s/%s/%s}" % (name, pattern, replacement)
            value = value or ""
            rx = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return _go_replace_all(rx, value, replacement)
            m = rx.search(value)
            if m:
                value = value[:m.start()] + replacement + value[m.end():]
            return value
        raise _LexError(f"unsupported modifier ({chs}) in substitution")

    def process_name(self) -> str:
        name: list[str] = []
        while self.pos < len(self.src):
            ch = self.src[self.pos]
            if not name and ch.isdecimal():
                while self.pos < len(self.src) and self.src[self.pos].isdecimal():
                    name.append(self.src[self.pos])
                    self.pos += 1
                return "".join(name)
            if not name and _is_special_param(ch):
                self.pos += 1
                return ch
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(ch)
            self.pos += 1
        return "".join(name)

    def process_possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space: list[str] = []
        while self.peek() in ("\t", "\r", " ") and self.peek() != _EOF:
            space.append(self.next())
        return "<<" + "".join(space)


class _LexError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


_MODIFIERS = "${V:-word} ${V-word} ${V:+word} ${V+word} ${V:?msg} ${V?msg} ${V#pat} ${V##pat} " \
             "${V%pat} ${V%%pat} ${V/pat/repl} ${V//pat/repl}"


def _hint(message: str) -> str | None:
    """A suggestion for one of the lexer's errors."""
    if message.startswith("syntax error: missing '}'"):
        return "close the ${...} with '}'"
    if message.startswith("syntax error: missing '/'"):
        return "write ${V/pattern/replacement}"
    if message.startswith(("syntax error: bad substitution", "unsupported modifier")):
        return "write $NAME or ${NAME}, or one of " + _MODIFIERS
    if message.startswith("unexpected end of statement"):
        return "close the quote, or escape it with the escape character"
    if message.startswith("invalid pattern"):
        return "in a pattern only \\*, \\? and \\\\ are escapes"
    return None


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (`*`, `?`, escapes; no brackets) as a regex, as BuildKit does."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = (1 if pattern.startswith("\ufeff") else 0), len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < n else _EOF
            if nxt in ("}", "/") and nxt:
                continue
            if nxt not in ("*", "?", "\\") or not nxt:
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            i += 1
            out.append("\\" + nxt)
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _go_replace_all(rx: re.Pattern[str], value: str, template: str) -> str:
    """Go's `Regexp.ReplaceAllString`: an empty match right after the previous match is not
    replaced (Python's `re.sub` replaces it), and `template` is expanded per match."""
    out: list[str] = []
    last = pos = 0
    while pos <= len(value):
        m = rx.search(value, pos)
        if m is None:
            break
        out.append(value[last:m.start()])
        if m.end() > last or m.start() == 0:
            out.append(_go_expand(template, m.group(0)))
        last = m.end()
        pos = pos + 1 if pos + 1 > m.end() else m.end()
    out.append(value[last:])
    return "".join(out)


def _go_expand(template: str, match: str) -> str:
    """Go's `Regexp.Expand` for a pattern without groups: `$0`/`${0}` -> the match, `$$` -> `$`,
    any other `$name`/`${name}` -> "", a `$` not followed by a name stays."""
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        brace = i < n and template[i] == "{"
        k = start = i + brace
        while k < n and (template[k].isalpha() or template[k].isdecimal() or template[k] == "_"):
            k += 1
        if k == start or (brace and (k >= n or template[k] != "}")):
            out.append("$")  # malformed: the `$` is kept as text
            continue
        if template[start:k] == "0":
            out.append(match)
        i = k + brace


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each `\\x` escape pair in order (BuildKit's reversePattern)."""
    chars = list(pattern)
    out = [""] * len(chars)
    last = len(chars) - 1
    i = 0
    while i <= last:
        tok = chars[i]
        j = last - i
        if tok == "\\" and i != last:
            out[j - 1] = tok
            out[j] = chars[i + 1]
            i += 2
        else:
            out[j] = tok
            i += 1
    return "".join(out)


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand `word` to one string (BuildKit `ProcessWord`); raises `ExpansionError`."""
    return Lexer(word, env, escape).run()[0]


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand `text` and split it into words (BuildKit `ProcessWords`); raises `ExpansionError`."""
    return Lexer(text, env, escape).run()[1]


def process_heredoc(body: str, env: Mapping[str, str]) -> str:
    """Expand the body of a `COPY <<EOF` heredoc as BuildKit does: variables and `\\` escapes
    (always the backslash, whatever the escape directive), quotes kept as written."""
    return Lexer(body, env, "\\", skip_process_quotes=True).run()[0]
