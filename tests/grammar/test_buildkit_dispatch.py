"""What BuildKit does with the parsed words when it dispatches them (dockerfile2llb), checked
through the builder's conversion: COPY heredoc expansion, ONBUILD trigger text, RUN --mount
checks after expansion."""

from __future__ import annotations

import re
from typing import Any

import pytest

from builder.build.convert import Options, convert
from builder.build.graph import Exec, FileCopy
from grammar import parse
from grammar.errors import DockerfileError

BASE = {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": ""}


def target_nodes(text: str, **opts: Any) -> list:
    graph = convert(parse(text), Options(**opts), lambda ref, platform: BASE)
    return [n.op for n in graph.stages[graph.target].nodes]


def test_copy_heredoc_expansion_keeps_quotes_and_uses_backslash_escapes() -> None:
    # BuildKit expands an unquoted COPY heredoc with quotes kept (SkipProcessQuotes) and `\`
    # as the escape even under `# escape=` (dockerfile_heredoc_test.go: q1, q2, slashfile*).
    text = ("# escape=`\nFROM busybox\nARG name=world\n"
            "COPY <<EOF /f.json\n{\"a\": \"Hello ${name}\", 'b': '$name'}\n\\$x \\\\ `\nEOF\n")
    (copy,) = [op for op in target_nodes(text) if isinstance(op, FileCopy)]
    assert copy.heredocs == (("EOF", "{\"a\": \"Hello world\", 'b': 'world'}\n$x \\ `\n"),)


def test_quoted_copy_heredoc_is_kept_verbatim() -> None:
    text = "FROM busybox\nARG name=world\nCOPY <<'EOF' /f\n\"$name\" \\$\nEOF\n"
    (copy,) = [op for op in target_nodes(text) if isinstance(op, FileCopy)]
    assert copy.heredocs == (("EOF", "\"$name\" \\$\n"),)


@pytest.mark.parametrize("trigger,expected", [
    ("ONBUILD RUN a \\\n  b", "RUN a   b"),  # the continuation joined as Docker joins it
    ("ONBUILD RUN a \\\n# a comment line\n  b", "RUN a   b"),  # the comment line dropped
    ("ONBUILD RUN a \\\r\n  b", "RUN a   b"),  # CRLF
    ("onbuild   COPY a b", "COPY a b"),
    ("ONBUILD RUN <<A <<-B\n1\nA\n\t2\n\tB", "RUN <<A <<-B\n1\nA\n\t2\nB"),  # body + name per heredoc
])
def test_onbuild_trigger_is_buildkits_expression(trigger: str, expected: str) -> None:
    graph = convert(parse(f"FROM busybox\n{trigger}\n"), Options(), lambda ref, platform: BASE)
    assert graph.stages[graph.target].config["OnBuild"] == [expected]


def test_onbuild_trigger_joins_with_the_escape_directive() -> None:
    graph = convert(parse("# escape=`\nFROM busybox\nONBUILD RUN dir c:\\ `\n  && echo hi\n"), Options(),
                    lambda ref, platform: BASE)
    assert graph.stages[graph.target].config["OnBuild"] == ["RUN dir c:\\   && echo hi"]


@pytest.mark.parametrize("mount,message", [
    ("type=bind,target=/x,foo", "invalid field 'foo' must be a key=value pair"),
    ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
    ("required,type=secret,id=s", "unexpected key 'required' for mount type 'bind'"),  # order matters, as in Go
    ("type=$T,target=/x,size=1m", "unexpected key 'size' for mount type 'cache'"),
    ("type=cache,target=/x,uid=$U", "invalid value 1_000 for uid"),
    ("type=tmpfs,target=/x,size=$S", "invalid value for size: -1"),
    ("type=$K,id=s,sharing=locked", "secret mount should not define sharing"),
])
def test_mount_checked_after_expansion(mount: str, message: str) -> None:
    text = f"FROM busybox\nARG T=cache\nARG U=1_000\nARG S=-1\nARG K=secret\nRUN --mount={mount} true\n"
    with pytest.raises(DockerfileError, match=message) as info:
        target_nodes(text)
    assert info.value.line == 6


@pytest.mark.parametrize("size,expected", [("1048576", 1048576), ("64m", 64 << 20), ("1.5g", 3 << 29),
                                           ("2GiB", 2 << 30), ("$S", 8 << 10)])
def test_tmpfs_size_takes_docker_units(size: str, expected: int) -> None:
    ops = target_nodes(f"FROM busybox\nARG S=8kb\nRUN --mount=type=tmpfs,target=/t,size={size} true\n")
    (run,) = [op for op in ops if isinstance(op, Exec)]
    assert run.mounts[0].size == expected


@pytest.mark.parametrize("value", ["0o7", "0_7", "+7", "8", "٣"])
def test_mount_mode_is_plain_octal(value: str) -> None:
    with pytest.raises(DockerfileError, match=re.escape(f"invalid value {value} for mode")):
        parse(f"FROM busybox\nRUN --mount=type=cache,target=/c,mode={value} true\n")


@pytest.mark.parametrize("value", ["$X", "${X:-builder}", "${X"])
def test_copy_from_rejects_variables(value: str) -> None:
    # BuildKit's toCommand: "variable expansion is not supported for --from"
    with pytest.raises(DockerfileError, match="variable expansion is not supported for --from") as info:
        parse(f"ARG X=builder\nFROM busybox AS builder\nFROM busybox\nCOPY --from={value} /a /b\n")
    assert (info.value.line, info.value.column) == (4, 6) and "FROM ${IMG} AS src" in (info.value.hint or "")


@pytest.mark.parametrize("value", ["builder", "0", "a$"])
def test_copy_from_without_variables_is_accepted(value: str) -> None:
    parse(f"FROM busybox AS builder\nFROM busybox\nCOPY --from={value} /a /b\n")


def test_expansion_error_caret_is_on_the_word() -> None:
    with pytest.raises(DockerfileError) as info:
        target_nodes("FROM busybox\nARG A\nENV X=1 Y=\"${A:?must be set}\"\n")
    err = info.value
    assert (err.line, err.column) == (3, 11) and "A: must be set" in err.message
    assert err.render().splitlines()[1:3] == ['  ENV X=1 Y="${A:?must be set}"', " " * 12 + "^"]
    assert err.hint and "--build-arg A=" in err.hint


@pytest.mark.parametrize("run", ["RUN <<'EOF'", 'RUN <<"EOF"', "RUN 3<<EOF", "RUN << EOF", "RUN <<EOF", "RUN <<-EOF"])
def test_run_of_one_heredoc_runs_its_body(run: str) -> None:
    # BuildKit's dispatchRun: MustParseHeredoc(command) -> the body is the script, whatever the
    # delimiter's quotes, fd or blanks (a quoted one used to leave `sh -c "<<'EOF' ..."`: no command)
    ops = target_nodes(f"FROM busybox\n{run}\n\techo $HOME\n\tEOF\n".replace("\t", "\t" if "-" in run else ""))
    (op,) = [op for op in ops if isinstance(op, Exec)]
    assert op.argv == ("/bin/sh", "-c", "echo $HOME\n")


def test_run_with_a_command_before_the_heredoc_is_a_script() -> None:
    # BuildKit: the command line, then per heredoc a newline, its raw body and its name
    ops = target_nodes("FROM busybox\nRUN cat <<'EOF' - <<-B > /f\n$HOME\nEOF\n\t2\n\tB\nRUN cat <<E\nE\n")
    first, second = [op for op in ops if isinstance(op, Exec)]
    assert first.argv == ("/bin/sh", "-c", "cat <<'EOF' - <<-B > /f\n$HOME\nEOF\n\t2\nB")
    assert second.argv == ("/bin/sh", "-c", "cat <<E\nE")


@pytest.mark.parametrize("text", ["FROM $X\n", "ARG X\nFROM ${X}\n", "ARG X=\nFROM $X AS a\n"])
def test_blank_base_name_is_buildkits_error(text: str) -> None:
    with pytest.raises(DockerfileError, match=r"base name \(\$\{?X\}?\) should not be blank") as info:
        convert(parse(text), Options(), lambda ref, platform: pytest.fail(f"resolved {ref!r}"))
    assert info.value.line == text.count("\n") and "--build-arg" in (info.value.hint or "")
