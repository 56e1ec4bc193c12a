"""Instruction flags as BuildKit accepts them (instructions/bflag.go and parse.go).

`FLAGS` maps each keyword to its flags and their kinds. `check_flags` accepts exactly what
BuildKit's `BFlags.Parse` accepts: unknown flag, duplicate, missing value and non-boolean
values are errors, each with a "did you mean". Values that BuildKit checks when it parses the
instruction (HEALTHCHECK durations and retries, RUN --network/--security, FROM stage names,
RUN --mount keys and types) are checked here too; a `--mount` value holding `$` is checked
after expansion by the builder with `parse_mount`.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Callable

from grammar.ast import Flag, Node, SourceRange

STRING, BOOL, STRINGS = "string", "bool", "strings"

FLAGS: dict[str, dict[str, str]] = {
    "from": {"platform": STRING},
    "run": {"mount": STRINGS, "network": STRING, "security": STRING},
    "copy": {"chown": STRING, "from": STRING, "chmod": STRING, "link": BOOL, "exclude": STRINGS,
             "parents": BOOL},
    "add": {"chown": STRING, "chmod": STRING, "link": BOOL, "keep-git-dir": BOOL,
            "checksum": STRING, "unpack": BOOL, "exclude": STRINGS},
    "healthcheck": {"interval": STRING, "timeout": STRING, "start-period": STRING,
                    "start-interval": STRING, "retries": STRING},
}
# BuildKit never parses the flags of these (HEALTHCHECK NONE included): any flag is accepted
UNCHECKED = frozenset({"arg", "stopsignal"})

NETWORK_MODES = ("default", "none", "host")
SECURITY_MODES = ("insecure", "sandbox")
MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*\Z")


class FlagError(ValueError):
    """A flag BuildKit would reject; `hint` holds a suggestion."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.index = 0  # which flag of the instruction (for check_flags)


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest choice to a misspelt word, case aside (`--FROM` -> `from`), or None."""
    lowered = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def split_flag(raw: str) -> tuple[str, str | None]:
    """`--name=value` -> (name, value); `--name` -> (name, None). Docker requires the `--`."""
    if not raw.startswith("--"):
        raise FlagError(f"arg should start with -- : {raw}")
    name, eq, value = raw[2:].partition("=")
    return name, (value if eq else None)


def check_flags(keyword: str, raws: list[str]) -> None:
    """Raise FlagError for the first flag BuildKit's BFlags.Parse would reject."""
    if keyword in UNCHECKED:
        return
    allowed = FLAGS.get(keyword, {})
    used: set[str] = set()
    for index, raw in enumerate(raws):
        try:
            _check_one(raw, allowed, used, keyword)
        except FlagError as exc:
            exc.index = index
            raise


def build_flags(keyword: str, items: list[tuple[str, int, int]], *, check: bool = True) -> tuple[Flag, ...]:
    """The `Flag`s of an instruction from its (raw flag, line, column) items; unless `check` is
    false, raises FlagError (with `index`) for the first flag `check_flags` rejects."""
    if not items:
        return ()
    if check:
        check_flags(keyword, [raw for raw, _, _ in items])
    out = []
    for raw, line, col in items:
        name, value = split_flag(raw)
        out.append(Flag(name, value, SourceRange(line, col, line, col + len(raw))))
    return tuple(out)


def _check_one(raw: str, allowed: dict[str, str], used: set[str], keyword: str) -> None:
    name, value = split_flag(raw)
    kind = allowed.get(name)
    if kind is None:
        close = suggest(name, tuple(allowed))
        raise FlagError(f"unknown flag: --{name}" + (f" (did you mean --{close}?)" if close else ""),
                        hint=_flag_hint(keyword, allowed))
    if name in used and kind != STRINGS:
        raise FlagError(f"duplicate flag specified: --{name}", hint=f"give --{name} once")
    used.add(name)
    if kind == BOOL:
        if value == "" or value is not None and value.lower() not in ("true", "false"):
            message = f"missing a value on flag: --{name}" if value == "" else \
                f"expecting boolean value for flag --{name}, not: {value}"
            raise FlagError(message, hint=f"write --{name}, --{name}=true or --{name}=false")
    elif value is None:
        raise FlagError(f"missing a value on flag: --{name}", hint=f"write --{name}=VALUE (no blank after --{name})")
    if keyword == "copy" and name == "from" and value and _expands(value):
        raise FlagError("variable expansion is not supported for --from, define a new stage with FROM "
                        "using ARG from global scope as a workaround",
                        hint="ARG IMG=... before the first FROM, then FROM ${IMG} AS src and COPY --from=src")


def _expands(value: str) -> bool:
    """Whether Docker's lexer changes `value` with no variables set (BuildKit's toCommand test)."""
    if not any(c in value for c in "$\\'\"`"):
        return False
    from grammar.errors import ExpansionError
    from grammar.shell_lexer import process_word

    try:
        return process_word(value, {}) != value
    except ExpansionError:
        return True


def _flag_hint(keyword: str, allowed: dict[str, str]) -> str:
    if not allowed:
        return f"{keyword.upper()} takes no flags"
    return f"{keyword.upper()} takes " + ", ".join(f"--{n}" for n in allowed)


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")


def parse_go_duration(s: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s", "1.5h", "300ms", "0"); ValueError if bad."""
    quoted = '"' + s + '"'
    neg = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _NUMBER.match(s, pos)
        assert m is not None  # every part of _NUMBER is optional: it always matches
        whole, frac = m.group(1), m.group(2)
        if whole == "" and not frac:
            raise ValueError(f"time: invalid duration {quoted}")
        pos = m.end()
        unit_end = pos
        while unit_end < len(s) and s[unit_end] != "." and not "0" <= s[unit_end] <= "9":
            unit_end += 1
        unit = s[pos:unit_end]
        if unit == "":
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        scale = _UNITS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = unit_end
    if total > 2**63 - (0 if neg else 1):
        raise ValueError(f"time: invalid duration {quoted}")
    return -total if neg else total


def check_healthcheck(flag_values: dict[str, str]) -> None:
    """Durations (>= 1ms or 0) and a non-negative 32-bit retry count, as BuildKit checks them."""
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = flag_values.get(name, "")
        if value == "":
            continue
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise FlagError(str(exc), hint="durations look like 30s, 1m30s or 500ms") from None
        if ns != 0 and ns < 1_000_000:
            raise FlagError(f'Interval "{name}" cannot be less than 1ms', hint="use 0 (the default) or 1ms or more")
    retries = flag_values.get("retries", "")
    if retries != "":
        if not re.fullmatch(r"[+-]?[0-9]+", retries) or not -2**31 <= int(retries) < 2**31:
            raise FlagError(f'strconv.ParseInt: parsing "{retries}": invalid syntax'
                            if not re.fullmatch(r"[+-]?[0-9]+", retries)
                            else f'strconv.ParseInt: parsing "{retries}": value out of range',
                            hint="--retries takes a whole number, 0 or more")
        if int(retries) < 0:
            raise FlagError(f"--retries cannot be negative ({int(retries)})", hint="use 0 or more")


def check_run_flags(flags: tuple[Flag, ...]) -> None:
    """RUN's flag values: `check_run` over the flags of one instruction."""
    check_run({f.name: f.value or "" for f in flags}, tuple(f.value or "" for f in flags if f.name == "mount"))


def check_run(flag_values: dict[str, str], mounts: tuple[str, ...]) -> None:
    net = flag_values.get("network")
    if net is not None and net not in NETWORK_MODES:
        raise FlagError(f'invalid network mode "{net}"', hint="use default, none or host")
    sec = flag_values.get("security")
    if sec is not None and sec not in SECURITY_MODES:
        raise FlagError(f'security "{sec}" is not valid', hint="use sandbox or insecure")
    for value in mounts:
        parse_mount(value, None)


class Mount(Node):
    """A RUN --mount, after expansion."""

    __slots__ = ("type", "target", "source", "from_", "readonly", "id", "sharing", "required", "size",
                 "mode", "uid", "gid", "env")
    _defaults = {"type": "bind", "target": "", "source": "", "from_": "", "readonly": True, "id": "",
                 "sharing": "", "required": False, "size": "", "mode": None, "uid": None, "gid": None,
                 "env": None}
    if TYPE_CHECKING:  # the `_defaults`
        type: str = "bind"
        target: str = ""
        source: str = ""
        from_: str = ""
        readonly: bool = True
        id: str = ""
        sharing: str = ""
        required: bool = False
        size: str = ""
        mode: int | None = None
        uid: int | None = None
        gid: int | None = None
        env: str | None = None
    else:
        type: str
        target: str
        source: str
        from_: str
        readonly: bool
        id: str
        sharing: str
        required: bool
        size: str
        mode: int | None
        uid: int | None
        gid: int | None
        env: str | None


_MOUNT_KEYS = ("type", "from", "source", "target", "readonly", "id", "sharing", "required", "size",
               "mode", "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env")


def _csv_fields(value: str) -> list[str]:
    import csv

    try:
        rows = list(csv.reader([value], strict=True))
    except csv.Error as exc:
        raise FlagError(f"failed to parse csv mounts: {exc}") from None
    return rows[0] if rows else []


def _parse_bool(key: str, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise FlagError(f"invalid value for {key}: {value}")


_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_RAM_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """go-units `RAMInBytes` (tmpfs `size=`): `1048576`, `64m`, `1.5g`, `2 GiB`, `10kb`, `8b`;
    binary multiples; raises ValueError as Docker rejects."""
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep < 0:
        raise ValueError(f"invalid size: '{text}'")
    num, sfx = (text[:sep + 1], text[sep + 1:]) if text[sep] != " " else (text[:sep], text[sep + 1:])
    if not _GO_FLOAT.match(num):
        raise ValueError(f"invalid size: '{text}'")
    size = float(num)
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    sfx = sfx.lower()
    if sfx in ("", "b"):
        return int(size)
    if len(sfx) > 3 or sfx[0] not in _RAM_UNITS or sfx[1:] not in ("", "b", "ib"):
        raise ValueError(f"invalid suffix: '{sfx}'")
    return int(size * _RAM_UNITS[sfx[0]])


def parse_mount(value: str, expand: Callable[[str], str] | None) -> Mount | None:
    """BuildKit's parseMount. With `expand` None (parse time) a field whose value holds `$` is
    left for later, as are bare words; returns the Mount only when `expand` is given."""
    fields = _csv_fields(value)
    if expand is None and any(f.partition("=")[0].lower() == "type" and "$" in f for f in fields):
        return None  # the type decides which keys are allowed: check after expansion
    m: dict[str, object] = {"type": "bind"}
    ro_auto = True
    deferred = False
    for fld in fields:
        key, eq, val = fld.partition("=")
        key = key.lower()
        if not eq:
            if expand is None:
                deferred = True
                continue
            if key in ("readonly", "ro"):
                m["readonly"], ro_auto = True, False
            elif key in ("readwrite", "rw"):
                m["readonly"], ro_auto = False, False
            elif key == "required":
                if m["type"] not in ("secret", "ssh"):
                    raise FlagError(f"unexpected key '{key}' for mount type '{m['type']}'")
                m["required"] = True
            else:
                raise FlagError(f"invalid field '{fld}' must be a key=value pair")
            continue
        if expand is not None:
            val = expand(val)
        elif key == "from" and "$" in val[:-1]:
            raise FlagError(f"'{key}' doesn't support variable expansion, define alias stage instead",
                            hint="ARG IMG=... before the first FROM, then FROM ${IMG} AS src and from=src")
        elif "$" in val:
            deferred = True
            continue
        if key == "type":
            mtype = val.lower()
            if mtype not in MOUNT_TYPES:
                close = suggest(mtype, MOUNT_TYPES)
                raise FlagError(f'unsupported mount type "{val}"' + (f" (did you mean {close}?)" if close else ""),
                                hint="mount types: " + ", ".join(MOUNT_TYPES))
            m["type"] = mtype
        elif key == "from":
            m["from_"] = val
        elif key in ("source", "src"):
            m["source"] = val
        elif key in ("target", "dst", "destination"):
            m["target"] = val
        elif key in ("readonly", "ro"):
            m["readonly"], ro_auto = _parse_bool(key, val), False
        elif key in ("readwrite", "rw"):
            m["readonly"], ro_auto = not _parse_bool(key, val), False
        elif key == "required":
            if m["type"] not in ("secret", "ssh"):
                raise FlagError(f"unexpected key '{key}' for mount type '{m['type']}'")
            m["required"] = _parse_bool(key, val)
        elif key == "size":
            if m["type"] != "tmpfs":
                raise FlagError(f"unexpected key '{key}' for mount type '{m['type']}'")
            try:
                ram_in_bytes(val)
            except ValueError:
                raise FlagError(f"invalid value for {key}: {val}", hint="sizes look like 64m, 1g or 1048576") from None
            m["size"] = val
        elif key == "id":
            m["id"] = val
        elif key == "sharing":
            if val.lower() not in SHARING_MODES:
                raise FlagError(f'unsupported sharing value "{val}"', hint="use shared, private or locked")
            m["sharing"] = val.lower()
        elif key in ("mode", "uid", "gid"):  # Go's ParseUint(val, 8 or 10, 32): plain ASCII digits
            if not re.fullmatch(r"[0-7]+" if key == "mode" else r"[0-9]+", val, re.ASCII) \
                    or int(val, 8 if key == "mode" else 10) >= 2**32:
                raise FlagError(f"invalid value {val} for {key}")
            m[key] = int(val, 8 if key == "mode" else 10)
        elif key == "env":
            m["env"] = val
        else:
            close = suggest(key, _MOUNT_KEYS)
            raise FlagError(f"unexpected key '{key}' in '{fld}'" + (f" (did you mean {close}?)" if close else ""))
    t = m["type"]
    if t not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if m.get(key) is not None:
                raise FlagError(f'{key} not allowed for "{t}" type mounts')
    if ro_auto:
        m["readonly"] = t not in ("cache", "tmpfs")
    if t == "secret" and not deferred:
        if m.get("from_"):
            raise FlagError("secret mount should not have a from")
        if m.get("sharing"):
            raise FlagError("secret mount should not define sharing")
        if not m.get("source") and not m.get("target") and not m.get("id"):
            raise FlagError("invalid secret mount. one of source, target required",
                            hint="name the secret: --mount=type=secret,id=NAME (mounted at /run/secrets/NAME)")
        if m.get("source") and m.get("id"):
            raise FlagError("both source and id can't be set")
    if m.get("sharing") and t != "cache":
        raise FlagError(f"invalid cache sharing set for {t} mount")
    return Mount(**m) if expand is not None else None  # type: ignore[arg-type]
