"""How Docker's parser splits one logical line: keyword, flags, words, pairs, JSON arrays.

Each function follows the BuildKit function named in its docstring (frontend/dockerfile/parser),
quirks included: quotes are kept in words, `ENV a b c` is the old one-pair form, trailing text
after a JSON array is ignored, invalid JSON falls back to the shell form.
"""

from __future__ import annotations

import json
import re

from grammar.shell_lexer import go_isspace

# Go's reWhitespace: the separators Docker splits words on (no newline, no unicode spaces)
WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_GO_SPACE = "\t\n\v\f\r \x85\xa0"


_ASCII_SPACE = " \t\n\v\f\r\x85\xa0"


def go_strip(s: str) -> str:
    """Go's strings.TrimSpace (unicode.IsSpace on both ends)."""
    t = s.strip(_ASCII_SPACE)
    if not t or (t[0] <= "\xff" and t[-1] <= "\xff"):
        return t
    i, j = 0, len(s)
    while i < j and go_isspace(s[i]):
        i += 1
    while j > i and go_isspace(s[j - 1]):
        j -= 1
    return s[i:j]


def go_lstrip(s: str) -> str:
    t = s.lstrip(_ASCII_SPACE)
    if not t or t[0] <= "\xff":
        return t
    i = 0
    while i < len(s) and go_isspace(s[i]):
        i += 1
    return s[i:]


class NotStringArray(ValueError):
    """A JSON array with something other than strings in it (Docker rejects the line)."""


def split_command(line: str) -> tuple[str, list[tuple[str, int]], str, int]:
    """splitCommand: (keyword, [(flag, offset)], args, args offset) with offsets into `line`."""
    stripped = go_strip(line)
    lead = line.index(stripped[0]) if stripped else 0
    m = WHITESPACE.search(stripped)
    if not m:
        return stripped, [], "", len(line)
    cmd = stripped[:m.start()]
    rest_off = lead + m.end()
    rest = stripped[m.end():]
    args_rel, flags = extract_builder_flags(rest)
    args = rest[args_rel:]
    args_stripped = go_strip(args)
    off = rest_off + args_rel + (len(args) - len(go_lstrip(args)))
    return cmd, [(f, rest_off + o) for f, o in flags], args_stripped, off


def extract_builder_flags(line: str) -> tuple[int, list[tuple[str, int]]]:
    """extractBuilderFlags: leading `--flag` words (quotes removed), and where the rest starts.

    Works on characters where Docker works on bytes; they differ only for non-ASCII flags.
    """
    head = go_lstrip(line)
    if not head.startswith("--"):  # the common case: no flags at all
        return len(line) - len(head), []
    if line.isascii() and not _SPECIAL_FLAG_CHARS.search(line):
        return _simple_flags(line)
    return extract_flags_by_char(line)


def extract_flags_by_char(line: str) -> tuple[int, list[tuple[str, int]]]:
    """extract_builder_flags, character by character as BuildKit does (the general case)."""
    words: list[tuple[str, int]] = []
    n = len(line)
    pos = 0
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word: list[str] = []
    start = 0
    quote = ""
    blank_ok = False
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if go_isspace(ch):
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return pos, words
            phase = in_word
            start = pos
        if pos == n:  # in_word or in_quote at end of input
            w = "".join(word)
            if w != "--" and (blank_ok or w):
                words.append((w, start))
            break
        if phase == in_word:
            if go_isspace(ch):
                phase = in_spaces
                w = "".join(word)
                if w == "--":
                    return pos, words
                if blank_ok or w:
                    words.append((w, start))
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
            continue
        # in_quote
        if ch == quote:
            phase = in_word
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                phase = in_word
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return n, words


_SPECIAL_FLAG_CHARS = re.compile(r"[\\'\"\x1c-\x1f]")
_QUOTES = re.compile(r"['\"\x1c-\x1f]")
_BALANCED = re.compile("(?:[^'\"]++|'[^']*+'|\"[^\"]*+\")*+")
_QUOTED_WORD = re.compile("(?:[^ \t\n\v\f\r'\"]++|'[^']*+'|\"[^\"]*+\")++")
_ASCII_WORD = re.compile(r"[ \t\n\v\f\r]*([^ \t\n\v\f\r]+)")


def _simple_flags(line: str) -> tuple[int, list[tuple[str, int]]]:
    """extractBuilderFlags for ASCII text without quotes or backslashes: plain word splitting."""
    words: list[tuple[str, int]] = []
    pos = 0
    while True:
        m = _ASCII_WORD.match(line, pos)
        if not m:
            return len(line), words
        word = m.group(1)
        if not word.startswith("--"):
            return m.start(1), words
        if word == "--":
            return m.end(1), words
        words.append((word, m.start(1)))
        pos = m.end(1)


def _split_balanced(rest: str) -> list[str] | None:
    """Words of ASCII text whose quotes are all closed (None otherwise). Possessive quantifiers
    keep both patterns linear: an unclosed quote must not make them backtrack."""
    if not _BALANCED.fullmatch(rest):
        return None
    return _QUOTED_WORD.findall(rest)


def parse_words(rest: str, escape: str) -> list[str]:
    """parseWords: split on whitespace outside quotes, keeping quotes and escapes in the words."""
    if rest.isascii() and escape not in rest:
        if not _QUOTES.search(rest):
            return rest.split()
        words = _split_balanced(rest)  # balanced quotes, no escapes: quotes stay in the words
        if words is not None:
            return words
    return parse_words_by_char(rest, escape)


def parse_words_by_char(rest: str, escape: str) -> list[str]:
    """parse_words, character by character as BuildKit does (the general case)."""
    words: list[str] = []
    n = len(rest)
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word: list[str] = []
    quote = ""
    blank_ok = False
    pos = 0
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if go_isspace(ch):
                pos += 1
                continue
            phase = in_word
        if pos == n:
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == in_word:
            if go_isspace(ch):
                phase = in_spaces
                if blank_ok or word:
                    words.append("".join(word))
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        # in_quote
        if ch == quote:
            phase = in_word
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = in_word
                pos += 1
                continue
            pos += 1
            word.append(ch)
            ch = rest[pos]
        word.append(ch)
        pos += 1
    return words


class NameValError(ValueError):
    """ENV/LABEL arguments Docker rejects; `word` is the offending word, if one."""

    def __init__(self, message: str, word: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        self.word, self.hint = word, hint


def parse_name_val(rest: str, key: str, escape: str) -> list[tuple[str, str]]:
    """parseNameVal (ENV, LABEL): `k v` (one pair, value kept whole) or `k=v k2="v 2"`."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise NameValError(f"{key} must have two arguments", hint=f"write {key} NAME=VALUE")
        return [(parts[0], parts[1])]
    pairs = []
    for word in words:
        if "=" not in word:
            raise NameValError(f"Syntax error - can't find = in {_go_quote(word)}. "
                               "Must be of the form: name=value", word,
                               hint='quote a value that holds blanks: NAME="a b"')
        k, v = word.split("=", 1)
        pairs.append((k, v))
    return pairs


def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _no_constants(name: str) -> None:
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse_json(rest: str, *, tail_ok: bool = False) -> list[str] | None:
    """parseJSON: the leading JSON array of strings, or None when `rest` is not JSON.

    Raises NotStringArray for an array holding anything but strings, as Docker does. Text after
    the array (other than JSON blanks) makes it no JSON: `json.Unmarshal` since Dockerfile 1.10
    (BuildKit 80518e2; v0.12.5's json.Decoder read the array and ignored the rest: `tail_ok`).
    """
    rest = go_lstrip(rest)
    if not rest.startswith("["):
        return None
    try:
        value, end = _DECODER.raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list) or (not tail_ok and rest[end:].strip(" \t\n\r")):
        return None
    for item in value:
        if not isinstance(item, str):
            raise NotStringArray("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def split_whitespace(rest: str) -> list[str]:
    """parseStringsWhitespaceDelimited."""
    if rest == "":
        return []
    return WHITESPACE.split(rest)


def split_health(rest: str) -> tuple[str, str]:
    """parseHealthConfig: the type word and the rest of the line."""
    sep = 0
    while sep < len(rest) and not go_isspace(rest[sep]):
        sep += 1
    nxt = sep
    while nxt < len(rest) and go_isspace(rest[nxt]):
        nxt += 1
    return rest[:sep], rest[nxt:]
