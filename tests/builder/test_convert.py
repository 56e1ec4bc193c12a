"""Dockerfile -> BuildGraph: ARG/ENV scoping, expansion, config semantics, history, --target pruning."""

from __future__ import annotations

import re
from typing import Any

import pytest

from builder.build.convert import DEFAULT_PATH, Options, convert
from builder.errors import StageError
from builder.oci.platform import host
from builder.build.graph import ConfigChange, Exec, FileCopy, ImageSource, Mkdir, Scratch, StageRef
from grammar import parse
from grammar.errors import DockerfileError

BASE = {"Env": ["PATH=/bin:/usr/bin", "HOME=/root"], "Cmd": ["sh"], "WorkingDir": ""}


def build(text: str, *, images: dict[str, dict[str, Any]] | None = None, **opts: Any):
    images = {"busybox": BASE, "alpine:3": BASE} if images is None else images
    asked: list[str] = []

    def resolve(ref: str, platform: str) -> dict[str, Any]:
        asked.append(ref)
        if ref not in images:
            raise AssertionError(f"resolved an unexpected image {ref}")
        return images[ref]

    graph = convert(parse(text), Options(**opts), resolve)
    return graph, asked


def target(graph):
    return graph.stages[graph.target]


def execs(stage) -> list[Exec]:
    return [n.op for n in stage.nodes if isinstance(n.op, Exec)]


def test_global_arg_expands_from_and_redeclaration_inherits_its_value() -> None:
    g, asked = build("ARG IMG=busybox\nARG V=1\nFROM $IMG\nARG V\nRUN echo $V\n")
    st = target(g)
    assert st.base == ImageSource("busybox") and asked == ["busybox"]
    run = execs(st)[0]
    assert ("V", "1") in run.env and run.argv == ("/bin/sh", "-c", "echo $V")  # RUN is never expanded
    assert st.nodes[-1].created_by == "RUN |1 V=1 /bin/sh -c echo $V # buildkit"


def test_global_arg_is_invisible_in_a_stage_until_redeclared() -> None:
    g, _ = build("ARG V=1\nFROM busybox\nENV X=${V:-unset}\n")
    assert "X=unset" in target(g).config["Env"]


def test_build_arg_overrides_defaults_and_env_wins_over_arg() -> None:
    g, _ = build("FROM busybox\nARG A=default\nENV B=$A\nENV A=fromenv\nWORKDIR /w/$A\n", build_args={"A": "cli"})
    st = target(g)
    assert "B=cli" in st.config["Env"] and st.config["WorkingDir"] == "/w/fromenv"


def test_unused_build_arg_warns_but_proxy_and_platform_args_do_not() -> None:
    g, _ = build("FROM busybox\nARG USED\n", build_args={"USED": "1", "NOPE": "2", "http_proxy": "http://p:3128",
                                                         "TARGETARCH": "amd64"})
    assert g.warnings == ["one or more build args were not consumed: NOPE"]


def test_proxy_args_reach_run_env_but_not_config_or_history() -> None:
    g, _ = build("FROM busybox\nRUN wget x\n", build_args={"HTTP_PROXY": "http://proxy:3128"})
    st = target(g)
    run = execs(st)[0]
    assert ("HTTP_PROXY", "http://proxy:3128") in run.env
    assert "proxy" not in st.nodes[-1].created_by
    assert not any("PROXY" in e for e in st.config["Env"])


def test_predefined_platform_args() -> None:
    g, _ = build("FROM busybox\nARG TARGETPLATFORM\nARG TARGETARCH\nLABEL p=$TARGETPLATFORM a=$TARGETARCH\n",
                 platform="linux/arm64")
    assert target(g).config["Labels"] == {"p": "linux/arm64", "a": "arm64"}
    assert target(g).platform == "linux/arm64"


def test_target_prunes_stages_it_does_not_need() -> None:
    text = ("FROM alpine:3 AS unused\nRUN exit 1\n"
            "FROM busybox AS build\nRUN make\n"
            "FROM scratch AS final\nCOPY --from=build /out /out\n")
    g, asked = build(text, target="final")
    assert set(g.stages) == {1, 2} and asked == ["busybox"]
    assert isinstance(target(g).base, Scratch)
    copy = target(g).nodes[0].op
    assert isinstance(copy, FileCopy) and copy.from_stage == 1


def test_unknown_target_and_from_cycles_are_stage_errors() -> None:
    with pytest.raises(StageError, match="target stage 'nope' could not be found"):
        build("FROM busybox AS a\n", target="nope")
    with pytest.raises(StageError, match="^Dockerfile:2:3: stage 'b' refers to a later stage .*cycle"):
        build("FROM busybox AS a\n  COPY --from=b /x /x\nFROM busybox AS b\n")
    with pytest.raises(StageError, match="^Dockerfile:1:1: .*cycle"):
        build("FROM b AS a\nFROM a AS b\n")
    with pytest.raises(StageError, match="cycle"):
        build("FROM busybox AS a\nCOPY --from=a /x /x\n")
    with pytest.raises(StageError, match="^Dockerfile:2:1: stage index 5 does not exist"):
        build("FROM busybox\nCOPY --from=5 /x /x\n")


def test_from_previous_stage_by_name_is_a_stage_ref_and_inherits_config() -> None:
    g, _ = build("FROM busybox AS base\nENV A=1\nFROM base\nRUN true\n")
    st = target(g)
    assert st.base == StageRef(0) and "A=1" in st.config["Env"]


def test_default_path_is_added_when_missing() -> None:
    g, _ = build("FROM scratch\nENV X=1\n")
    assert target(g).config["Env"] == [f"PATH={DEFAULT_PATH}", "X=1"]


def test_entrypoint_resets_inherited_cmd_but_not_one_set_in_the_stage() -> None:
    g, _ = build('FROM busybox\nENTRYPOINT ["/bin/app"]\n')
    assert target(g).config["Cmd"] is None and target(g).config["Entrypoint"] == ["/bin/app"]
    g, _ = build('FROM busybox\nCMD ["x"]\nENTRYPOINT /bin/app\n')
    assert target(g).config["Cmd"] == ["x"] and target(g).config["Entrypoint"] == ["/bin/sh", "-c", "/bin/app"]


def test_config_instructions_and_their_history() -> None:
    text = ("FROM busybox\nLABEL a=1 \"b c\"=\"d e\"\nEXPOSE 80 53/udp 8000-8001\nVOLUME /data\nUSER www-data\n"
            "STOPSIGNAL SIGINT\nSHELL [\"/bin/ash\", \"-c\"]\nCMD echo hi\n"
            "HEALTHCHECK --interval=1m30s --retries=3 CMD wget -q localhost\nONBUILD RUN echo child\n"
            "MAINTAINER someone\n")
    g, _ = build(text)
    st = target(g)
    c = st.config
    assert c["Labels"] == {"a": "1", "b c": "d e"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert c["Volumes"] == {"/data": {}} and c["User"] == "www-data" and c["StopSignal"] == "SIGINT"
    assert c["Shell"] == ["/bin/ash", "-c"] and c["Cmd"] == ["/bin/ash", "-c", "echo hi"]
    assert c["ArgsEscaped"] is True  # BuildKit marks every CMD so
    assert "ArgsEscaped" not in target(build("FROM busybox\nENTRYPOINT [\"x\"]\n")[0]).config
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 90_000_000_000, "Retries": 3}
    assert c["OnBuild"] == ["RUN echo child"] and c["__author__"] == "someone"
    by = [n.created_by for n in st.nodes]
    assert by[:2] == ["LABEL a=1 b c=d e", "EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]"]  # words sorted as written
    assert 'CMD ["/bin/ash" "-c" "echo hi"]' in by
    assert all(isinstance(n.op, ConfigChange) for n in st.nodes)


def test_workdir_is_relative_to_the_previous_one_and_makes_a_mkdir_step() -> None:
    g, _ = build("FROM busybox\nUSER 33\nWORKDIR /a\nWORKDIR b/../c\n")
    st = target(g)
    assert st.config["WorkingDir"] == "/a/c"
    assert [n.op for n in st.nodes if isinstance(n.op, Mkdir)] == [Mkdir("/a", "33"), Mkdir("/a/c", "33")]


def test_onbuild_triggers_of_the_base_run_first() -> None:
    base = dict(BASE, OnBuild=["ENV FROM_TRIGGER=1", "RUN echo trig"])
    g, _ = build("FROM parent\nRUN echo mine\n", images={"parent": base})
    st = target(g)
    assert [n.instruction for n in st.nodes] == ["ENV FROM_TRIGGER=1", "RUN echo trig", "RUN echo mine"]
    assert "OnBuild" not in st.config


def test_copy_expands_sources_dest_and_flags_with_env() -> None:
    g, _ = build("FROM busybox\nENV D=/app U=33\nARG SRC=src\nCOPY --chown=$U:$U --chmod=755 $SRC/*.py $D/\n")
    op = target(g).nodes[-1].op
    assert isinstance(op, FileCopy)
    assert op.sources == ("src/*.py",) and op.dest == "/app/" and op.chown == "33:33" and op.chmod == "755"
    assert target(g).nodes[-1].created_by == "COPY --chown=33:33 --chmod=755 src/*.py /app/ # buildkit"


def test_run_mounts_and_network() -> None:
    g, _ = build("FROM busybox AS deps\nFROM busybox\nWORKDIR /src\n"
                 "RUN --mount=type=cache,target=.cache,id=c1,sharing=locked --mount=type=secret,id=tok "
                 "--mount=type=bind,from=deps,source=/etc,target=/deps --network=none make\n")
    run = execs(target(g))[0]
    cache, secret, bind = run.mounts
    assert (cache.type, cache.target, cache.id, cache.sharing) == ("cache", "/src/.cache", "c1", "locked")
    assert (secret.type, secret.target) == ("secret", "/run/secrets/tok")
    assert (bind.source_stage, bind.source, bind.readonly) == (0, "/etc", True)
    assert run.network == "none" and 0 in target(g).deps()


def test_expansion_error_is_located() -> None:
    with pytest.raises(DockerfileError) as info:
        build("FROM busybox\nENV A=${B:?B is required}\n")
    assert info.value.line == 2


def test_run_heredoc_runs_its_body_with_the_shell() -> None:
    g, _ = build("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\n")
    assert execs(target(g))[0].argv == ("/bin/sh", "-c", "echo one\necho two\n")


def test_one_env_instruction_expands_with_the_values_from_before_it() -> None:
    g, _ = build("FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n")
    env = target(g).config["Env"]
    assert "def=hello" in env and "ghi=bye" in env and "abc=bye" in env


def test_history_records_what_buildkit_records() -> None:
    """dockerfile2llb's created_by strings: ARG with the value in effect, RUN naming every ARG
    declared so far (valueless ones as `K=`, ENV's value when ENV shadows one), COPY without
    --from but with --parents, HEALTHCHECK as Go's %+v, and no entry for ONBUILD."""
    text = ("ARG G=g1\nFROM busybox AS a\nFROM busybox\nARG G\nARG NONE\nENV E=e\nARG D=${E}-x\nARG CLI\nENV D=env\n"
            "RUN true\nCOPY --from=a --chown=1:2 /x /y\nCOPY --parents --chmod=644 s/a.txt /z/\n"
            "HEALTHCHECK --interval=1m30s --start-period=500ms --retries=3 CMD wget -q localhost\n"
            "HEALTHCHECK NONE\nONBUILD RUN echo child\n")
    g, _ = build(text, build_args={"CLI": "v"})
    by = [n.created_by for n in target(g).nodes]
    assert by[:6] == ["ARG G=g1", "ARG NONE", "ENV E=e", "ARG D=e-x", "ARG CLI=v", "ENV D=env"]
    assert by[6] == "RUN |4 G=g1 NONE= D=env CLI=v /bin/sh -c true # buildkit"
    assert by[7:9] == ["COPY --chown=1:2 /x /y # buildkit", "COPY --parents --chmod=644 s/a.txt /z/ # buildkit"]
    assert by[9] == ("HEALTHCHECK {Test:[CMD-SHELL wget -q localhost] Interval:1m30s Timeout:0s StartPeriod:500ms "
                     "StartInterval:0s Retries:3}")
    assert by[10] == "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
    assert by[11] == ""  # the solver writes no history entry for it
    run = execs(target(g))[0]
    assert ("NONE", "") not in run.env  # a valueless ARG shows in history only


def test_a_run_heredoc_with_a_shebang_runs_as_a_file() -> None:
    """BuildKit mounts such a script at /dev/pipes/NAME and runs that path, so its interpreter
    line counts; without a shebang the body goes to the shell as one command string."""
    g, _ = build("FROM busybox\nRUN <<EOT\n#!/usr/bin/awk -f\nBEGIN { print 1 }\nEOT\nRUN <<EOF\necho plain\nEOF\n")
    script, plain = execs(target(g))
    assert script.argv == ("/bin/sh", "-c", "/dev/pipes/EOT")
    (m,) = script.mounts
    assert (m.type, m.target, m.mode) == ("file", "/dev/pipes/EOT", 0o755)
    assert m.content == "#!/usr/bin/awk -f\nBEGIN { print 1 }\n"
    assert m.key_part()["content"] == m.content  # the script decides the result
    assert plain.argv == ("/bin/sh", "-c", "echo plain\n") and plain.mounts == ()
    assert [n.created_by for n in target(g).nodes] == ["RUN /bin/sh -c /dev/pipes/EOT # buildkit",
                                                       "RUN /bin/sh -c echo plain\n # buildkit"]


@pytest.mark.parametrize("sig, ok", [("SIGTERM", True), ("term", True), ("9", True), ("SIGRTMIN+3", True),
                                     ("RTMAX-14", True), ("NOTASIG", False), ("0", False), ("SIGRTMIN+16", False)])
def test_stopsignal_is_checked_as_docker_checks_it(sig: str, ok: bool) -> None:
    text = f"FROM busybox\nSTOPSIGNAL {sig}\n"
    if ok:
        assert target(build(text)[0]).config["StopSignal"] == sig
    else:
        with pytest.raises(DockerfileError, match=f"invalid signal: {re.escape(sig)}"):
            build(text)


def test_a_repeated_stage_name_means_its_last_stage_except_in_a_later_from() -> None:
    """BuildKit: `--from` and `--target` find the last stage of a name; `FROM name` the last one above."""
    text = ("FROM busybox AS b\nRUN echo 1\nFROM b AS b\nRUN echo 2\nFROM busybox\nCOPY --from=b /v /v\n")
    g, _ = build(text)
    assert g.stages[1].base == StageRef(0) and target(g).nodes[0].op.from_stage == 1
    g, _ = build(text, target="b")
    assert g.target == 1 and sorted(g.stages) == [0, 1]


def test_expose_history_lists_ports_as_buildkit_does() -> None:
    """dockerfile 1.19+: `EXPOSE %v` of the parsed ports, from the words sorted as written."""
    g, _ = build("FROM busybox\nENV P=9000\nEXPOSE 8000-8001/UDP $P 1234 80\n")
    assert target(g).nodes[-1].created_by == "EXPOSE [9000/tcp 1234/tcp 80/tcp 8000/udp 8001/udp]"
    assert list(target(g).config["ExposedPorts"]) == ["1234/tcp", "80/tcp", "8000/udp", "8001/udp", "9000/tcp"]


def test_an_arg_declared_after_an_env_of_its_name_wins_until_the_next_env() -> None:
    """BuildKit's build env takes the later of ENV and ARG (the base image's ENV too); the image
    config keeps the ENV value."""
    base = dict(BASE, Env=["PATH=/bin", "DEBIAN_FRONTEND=teletype"])
    text = ("FROM parent\nARG DEBIAN_FRONTEND=noninteractive\nRUN a\nENV X=$DEBIAN_FRONTEND\n"
            "ENV DEBIAN_FRONTEND=dialog\nRUN b\nARG DEBIAN_FRONTEND\nRUN c\n")
    g, _ = build(text, images={"parent": base})
    st = target(g)
    a, b, c = execs(st)
    assert ("DEBIAN_FRONTEND", "noninteractive") in a.env and ("DEBIAN_FRONTEND", "teletype") not in a.env
    assert "X=noninteractive" in st.config["Env"] and "DEBIAN_FRONTEND=dialog" in st.config["Env"]
    assert ("DEBIAN_FRONTEND", "dialog") in b.env
    assert ("DEBIAN_FRONTEND", "dialog") in c.env  # a re-declared ARG without a value changes nothing
    assert st.nodes[1].created_by.startswith("RUN |1 DEBIAN_FRONTEND=noninteractive ")
    g, _ = build("FROM parent\nARG DEBIAN_FRONTEND\nRUN a\n", images={"parent": base},
                 build_args={"DEBIAN_FRONTEND": "cli"})
    assert ("DEBIAN_FRONTEND", "cli") in execs(target(g))[0].env


@pytest.mark.parametrize("plat, ok", [("linux/amd64", "linux/amd64"), ("linux/arm64/v8", "linux/arm64"),
                                      ("linux", str(host())), ("arm64", "linux/arm64"), ("linux/armhf", "linux/arm/v7"),
                                      ("bogus", ""), ("linux/", ""), ("a/b/c/d", "")])
def test_from_platform_is_parsed_as_containerd_parses_it(plat: str, ok: str) -> None:
    """Parsed as containerd parses it, and normalised as BuildKit passes it on (arm64/v8 is arm64)."""
    text = f"FROM --platform={plat} busybox\n"
    if ok:
        assert target(build(text)[0]).platform == ok
    else:
        with pytest.raises(DockerfileError, match=f"failed to parse platform {re.escape(plat)}"):
            build(text)


def test_platform_args_are_normalised_per_target() -> None:
    """TARGET*/BUILD* ARGs come from the normalised platform, whatever spelling --platform used."""
    text = "FROM busybox\nARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDARCH\nLABEL p=$TARGETPLATFORM a=$TARGETARCH v=$TARGETVARIANT b=$BUILDARCH\n"
    for given, want in (("linux/aarch64", ("linux/arm64", "arm64", "")), ("linux/armhf", ("linux/arm/v7", "arm", "v7")),
                        ("linux/arm64/v8", ("linux/arm64", "arm64", ""))):
        labels = target(build(text, platform=given)[0]).config["Labels"]
        assert (labels["p"], labels["a"], labels["v"]) == want
        assert labels["b"] == host().architecture
