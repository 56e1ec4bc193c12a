"""The public API of `grammar`: exported names, cheap import, picklable and frozen AST."""

from __future__ import annotations

import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest

import grammar
from grammar import ast


def test_all_lists_every_public_name() -> None:
    public = {n for n, v in vars(grammar).items()
              if not n.startswith("_") and not (isinstance(v, types.ModuleType) and n != "ast")
              and n not in ("annotations", "Mapping")}
    assert public == set(grammar.__all__)
    for name in grammar.__all__:
        assert hasattr(grammar, name), name


def test_import_grammar_and_ast_does_not_import_lark() -> None:
    code = "import grammar, grammar.ast, grammar.errors, sys; print('lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parse_does_not_import_lark_when_the_tables_are_current() -> None:
    code = "import grammar, sys; grammar.parse('FROM a\\n'); print('lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_committed_tables_are_what_lark_builds_from_the_grammar() -> None:
    from grammar import parser, tables

    TABLES = parser.load_tables()
    assert tables.canonical(TABLES) == tables.canonical(tables.build()), \
        "grammar changed: run python3 -m grammar.tables"


def test_stale_tables_are_rebuilt_with_lark(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    from grammar import parser, tables

    TABLES = parser.load_tables()
    stale = tmp_path / "_tables.json"
    stale.write_text(json.dumps({**TABLES, "grammar": "an older grammar"}))
    real_open = open

    def fake_open(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        return real_open(stale if str(path).endswith("_tables.json") else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    parser.load_tables.cache_clear()
    try:
        built = parser.load_tables()
        assert built is not TABLES and tables.canonical(built)[1:] == tables.canonical(TABLES)[1:]
        assert built["grammar"] == tables.grammar_text()
    finally:
        parser.load_tables.cache_clear()


SAMPLE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS build
RUN --mount=type=cache,target=/c <<EOF
echo hi
EOF
COPY --from=build ["/a b", "/c"]
ONBUILD RUN echo later
HEALTHCHECK --interval=5s CMD ["true"]
FROM build
ENV A=1 B="2 3"
"""


def test_ast_pickles_and_compares_equal() -> None:
    df = grammar.parse(SAMPLE, filename="x/Dockerfile")
    back = pickle.loads(pickle.dumps(df))
    assert back == df
    assert back.stages[0].instructions[0].heredocs[0].content == "echo hi\n"


def test_ast_is_frozen() -> None:
    df = grammar.parse(SAMPLE)
    with pytest.raises(AttributeError):
        df.stages[0].base.image = "other"  # type: ignore[misc]
    with pytest.raises(ast.FrozenError):
        del df.stages[0].base.image  # type: ignore[misc]


def test_every_ast_class_is_slotted_and_compares_by_value() -> None:
    classes = [c for c in vars(ast).values() if isinstance(c, type) and issubclass(c, ast.Node) and c is not ast.Node]
    assert len(classes) >= 27
    for cls in classes:
        assert "__slots__" in vars(cls), cls.__name__
    df = grammar.parse(SAMPLE)
    for inst in df.walk():
        assert not hasattr(inst, "__dict__")
        assert inst == type(inst)(*inst._values(inst)) and hash(inst) == hash(type(inst)(*inst._values(inst)))
    assert ast.ShellForm("x") != ast.ExecForm(("x",)) and ast.Heredoc("E", "x\n").fd == 0


def test_import_of_the_ast_does_not_import_dataclasses() -> None:
    code = "import grammar.ast, sys; print('dataclasses' in sys.modules, 'inspect' in sys.modules)"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(grammar.__file__).parent.parent)})
    assert out.stdout.split() == ["False", "False"]


def test_stages_meta_args_and_fields() -> None:
    df = grammar.parse(SAMPLE)
    assert df.directive("syntax") == "docker/dockerfile:1"
    assert df.escape == "\\"
    assert [a.pairs for a in df.meta_args] == [(("BASE", "busybox"),)]
    assert [(s.index, s.name, s.base.image) for s in df.stages] == [(0, "build", "$BASE"), (1, None, "build")]
    run, copy, onbuild, health = df.stages[0].instructions
    assert isinstance(run, ast.Run) and run.command == ast.ShellForm("<<EOF")
    assert run.flag_values("mount") == ("type=cache,target=/c",)
    assert run.range == ast.SourceRange(4, 1, 6, 4)
    assert isinstance(copy, ast.Copy) and copy.json and copy.sources == ("/a b",) and copy.dest == "/c"
    assert copy.flag("from") == "build"
    assert isinstance(onbuild, ast.Onbuild) and isinstance(onbuild.trigger, ast.Run)
    assert onbuild.trigger.command == ast.ShellForm("echo later")
    assert isinstance(health, ast.Healthcheck) and health.command == ast.ExecForm(("true",))
    env = df.stages[1].instructions[0]
    assert isinstance(env, ast.Env) and env.pairs == (("A", "1"), ("B", '"2 3"'))
    assert [i.keyword for i in df.walk()].count("run") == 2


def test_flag_ranges_point_at_the_flag_on_a_continuation_line() -> None:
    df = grammar.parse("FROM a\nCOPY \\\n   --chown=1:1 x /y\n")
    flag = df.stages[0].instructions[0].flags[0]
    assert flag.range == ast.SourceRange(3, 4, 3, 15)
    with pytest.raises(grammar.InvalidFlagError) as info:
        grammar.parse("FROM a\nCOPY \\\n   --chwon=1:1 x /y\n")
    assert (info.value.line, info.value.column) == (3, 4)
    assert "did you mean --chown?" in info.value.message


def test_heredoc_body_applies_chomp() -> None:
    df = grammar.parse("FROM a\nRUN <<-X cat\n\t\tone\n\ttwo\n\tX\n")
    doc = df.stages[0].instructions[0].heredocs[0]
    assert doc.content == "\t\tone\n\ttwo\n" and doc.chomp
    assert doc.body == "one\ntwo\n"


def test_check_instructions_rejects_unknown_with_suggestion() -> None:
    df = grammar.parse("FROM a\nRUN ok\nWORKDIRR /x\n", filename="df")
    assert isinstance(df.stages[0].instructions[1], ast.Unknown)
    with pytest.raises(grammar.UnknownInstructionError) as info:
        grammar.check_instructions(df)
    err = info.value
    assert (err.filename, err.line, err.column) == ("df", 3, 1)
    assert err.render() == "df:3:1: unknown instruction: WORKDIRR (did you mean WORKDIR?)\n  WORKDIRR /x\n  ^"
    grammar.check_instructions(grammar.parse("FROM a\nRUN ok\n"))


def test_parse_file_names_the_path(tmp_path) -> None:
    p = tmp_path / "Dockerfile.dev"
    p.write_text("FROM a\nCOPY onlyone\n")
    with pytest.raises(grammar.InstructionError) as info:
        grammar.parse_file(p)
    assert info.value.filename == str(p) and info.value.line == 2
    p.write_bytes(b"FROM a\nRUN \xff\n")
    with pytest.raises(grammar.DockerfileSyntaxError, match="invalid UTF-8") as info:
        grammar.parse_file(p)
    assert (info.value.filename, info.value.line, info.value.column) == (str(p), 2, 5)


def test_errors_are_value_errors_and_pickle() -> None:
    with pytest.raises(ValueError):
        grammar.expand("${x", {})
    with pytest.raises(grammar.InvalidFlagError) as info:
        grammar.parse("FROM a\nRUN --bogus x\n")
    back = pickle.loads(pickle.dumps(info.value))
    assert type(back) is grammar.InvalidFlagError and back.render() == info.value.render()


def test_submodules_do_not_shadow_public_functions() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(grammar.__path__):
        importlib.import_module(f"grammar.{mod.name}")
    for name in grammar.__all__:
        obj = getattr(grammar, name)
        assert not isinstance(obj, types.ModuleType) or name == "ast", name


@pytest.mark.parametrize("line,expected", [
    # Dockerfile 1.10 (BuildKit 80518e2, testInvalidJSONCommands): json.Unmarshal, so an array
    # followed by text is the shell form; v0.12.5 read the array and ignored the text
    ('RUN ["echo", "hello"]this is invalid', grammar.ast.ShellForm('["echo", "hello"]this is invalid')),
    ("ENTRYPOINT []random string", grammar.ast.ShellForm("[]random string")),
    ('CMD ["a", 1] tail', grammar.ast.ShellForm('["a", 1] tail')),  # invalid JSON: no string check
    ('CMD ["a"] \t', grammar.ast.ExecForm(("a",))),  # JSON blanks after the array are fine
    ('HEALTHCHECK CMD ["true"] x', grammar.ast.ShellForm('["true"] x')),
])
def test_text_after_a_json_array_makes_shell_form(line: str, expected) -> None:
    for fast in (True, False):
        from grammar.transform import build_dockerfile

        inst = build_dockerfile(f"FROM a\n{line}\n", fast_path=fast).instructions[1]
        assert inst.command == expected


def test_copy_and_volume_with_text_after_json_split_on_blanks() -> None:
    df = grammar.parse('FROM a\nCOPY ["a b", "c"] /d\nVOLUME ["/v"] /w\n')
    copy, volume = df.instructions[1:]
    assert (copy.sources, copy.dest, copy.json) == (('["a', 'b",', '"c"]'), "/d", False)
    assert (volume.paths, volume.json) == (('["/v"]', "/w"), False)


@pytest.mark.parametrize("line,message", [
    ("COPY --FROM=b x y", "unknown flag: --FROM (did you mean --from?)"),  # flag names are case-sensitive
    ("RUN --Network=none x", "unknown flag: --Network (did you mean --network?)"),
    ("RUNN x", "unknown instruction: RUNN (did you mean RUN?)"),
])
def test_suggestions_ignore_case(line: str, message: str) -> None:
    with pytest.raises(grammar.DockerfileError) as info:
        grammar.check_instructions(grammar.parse(f"FROM a\n{line}\n"))
    assert info.value.message == message
