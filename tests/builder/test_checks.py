"""Build checks: each case is one of BuildKit's own lint test cases (moby/buildkit
frontend/dockerfile/dockerfile_check_test.go), with the verdicts BuildKit expects: rule, message
and line, for `--check` (every stage) unless a case says which stages a build reaches."""

from __future__ import annotations

import pytest

import grammar
from builder.build.checks import lint, parse_check_options
from builder.build.checks.walk import BaseInfo, suggest
from builder.build.dockerignore import PatternMatcher
from builder.errors import BuildError

W = tuple[str, str, int]  # rule, detail, line


def _lint(text: str, *, ignore: str | None = None, build_args: dict[str, str] | None = None,
          reachable: set[int] | None = None, base_image=None):  # noqa: ANN001, ANN202
    matcher = PatternMatcher(ignore.splitlines()) if ignore is not None else None
    return lint(grammar.parse(text), text, build_args=build_args, reachable=reachable, ignore=matcher,
                target_platform="linux/amd64", build_platform="linux/amd64", base_image=base_image)


def _found(text: str, **kw) -> list[W]:  # noqa: ANN003
    return [(v.rule.name, v.detail, v.line) for v in _lint(text, **kw).violations]


CASES: list[tuple[str, str, list[W]]] = [
    # testStageName
    ("stage-name", "\n# warning: stage name should be lowercase\n#\nFROM scratch AS BadStageName\n\n"
     "# warning: 'as' should match 'FROM' cmd casing.\n#\nFROM scratch as base2\n\nFROM scratch AS base3\n",
     [("StageNameCasing", "Stage name 'BadStageName' should be lowercase", 4),
      ("FromAsCasing", "'as' and 'FROM' keywords' casing do not match", 8)]),
    ("from-as-lower", "\n# warning: 'AS' should match 'from' cmd casing.\n#\nfrom scratch AS base\n\nfrom scratch as base2\n",
     [("FromAsCasing", "'AS' and 'from' keywords' casing do not match", 4)]),
    # testNoEmptyContinuation
    ("empty-continuation", "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\n"
     "COPY Dockerfile \\\n.\n", [("NoEmptyContinuation", "Empty continuation line", 6)]),
    # testConsistentInstructionCasing
    ("casing-From", "\n# warning\n#\nFrom scratch as base\nFROM scratch AS base2\n",
     [("ConsistentInstructionCasing", "Command 'From' should match the case of the command majority (uppercase)", 4)]),
    ("casing-copy", "\nFROM scratch\n# warning\ncopy Dockerfile /foo\nCOPY Dockerfile /bar\n",
     [("ConsistentInstructionCasing", "Command 'copy' should match the case of the command majority (uppercase)", 4)]),
    ("casing-frOM", "\n# warning\n#\nfrOM scratch as base\nfrom scratch as base2\n",
     [("ConsistentInstructionCasing", "Command 'frOM' should match the case of the command majority (lowercase)", 4)]),
    ("casing-COPY", "\nfrom scratch\n# warning\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n",
     [("ConsistentInstructionCasing", "Command 'COPY' should match the case of the command majority (lowercase)", 4)]),
    ("casing-from-minority", "\n# w\n#\nfrom scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\nCOPY Dockerfile /baz\n",
     [("ConsistentInstructionCasing", "Command 'from' should match the case of the command majority (uppercase)", 4)]),
    ("casing-FROM-minority", "\n# w\n#\nFROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n",
     [("ConsistentInstructionCasing", "Command 'FROM' should match the case of the command majority (lowercase)", 4)]),
    ("casing-all-lower", "\nfrom scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\n", []),
    ("casing-all-upper", "\nFROM scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\n", []),
    ("casing-heredoc", "\nFROM alpine\nRUN <<'EOT'\nenv\nEOT\n", []),
    # testDuplicateStageName, testReservedStageName
    ("duplicate", "\nFROM scratch AS b\nFROM scratch AS b\n",
     [("DuplicateStageName", 'Duplicate stage name "b", stage names should be unique', 3)]),
    ("no-duplicate", "\nFROM scratch AS b1\nFROM scratch AS b2\n", []),
    ("reserved", "\nFROM scratch AS scratch\nFROM scratch AS context\n",
     [("ReservedStageName", 'Stage name should not use the same name as reserved stage "scratch"', 2),
      ("ReservedStageName", 'Stage name should not use the same name as reserved stage "context"', 3)]),
    ("not-reserved", "\nFROM scratch\nFROM scratch AS a\n", []),
    # testJSONArgsRecommended
    ("json-cmd", "\nFROM scratch\nCMD mycommand\n",
     [("JSONArgsRecommended", "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals", 3)]),
    ("json-entrypoint", "\nFROM scratch\nENTRYPOINT mycommand\n",
     [("JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals", 3)]),
    ("json-shell-cmd", "\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nCMD mycommand\n", []),
    ("json-shell-entrypoint", "\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nENTRYPOINT mycommand\n", []),
    ("json-shell-inherited", "\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nCMD mycommand\n", []),
    ("json-shell-inherited-ep", "\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nENTRYPOINT mycommand\n", []),
    # testMaintainerDeprecated
    ("maintainer", "\nFROM scratch\nMAINTAINER me@example.org\n",
     [("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label", 3)]),
    ("label-author", "\nFROM scratch\nLABEL org.opencontainers.image.authors=\"me@example.org\"\n", []),
    ("skip-json-cmd", "\nFROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n", []),
    ("skip-json-ep", "\nFROM scratch\n# check=skip=JSONArgsRecommended\nENTRYPOINT mycommand\n", []),
    ("skip-maintainer", "\nFROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me@example.org\n", []),
    # testUndeclaredArg
    ("from-arg", "\nARG base=scratch\nFROM $base\nCOPY Dockerfile .\n", []),
    ("from-buildplatform-declared", "\nARG BUILDPLATFORM=linux/amd64\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n", []),
    ("from-buildplatform", "\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n", []),
    ("from-debug", "\nARG DEBUG\nFROM scratch${DEBUG}\nCOPY Dockerfile .\n", []),
    ("from-debug-default", "\nARG DEBUG\nFROM scra${DEBUG:-tch}\nCOPY Dockerfile .\n", []),
    ("from-debug-empty", "\nARG DEBUG=\"\"\nFROM scratch${DEBUG-@bogus}\nCOPY Dockerfile .\n", []),
    ("from-typo", "\nFROM --platform=$BULIDPLATFORM scratch\nCOPY Dockerfile .\n",
     [("UndefinedArgInFrom", "FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)", 2)]),
    ("from-myarch", "\nARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\nCOPY Dockerfile .\n",
     [("UndefinedArgInFrom", "FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?)", 4)]),
    ("from-version", "\nARG tag=latest\nFROM busybox:${tag}${version} AS b\nCOPY Dockerfile .\n",
     [("UndefinedArgInFrom", "FROM argument 'version' is not declared", 3)]),
    # testWorkdirRelativePath
    ("workdir", "\nFROM scratch\nWORKDIR app/\n",
     [("WorkdirRelativePath", 'Relative workdir "app/" can have unexpected results if the base image changes', 3)]),
    ("workdir-inherited", "\nFROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n", []),
    ("workdir-skip", "\nFROM scratch\n# check=skip=WorkdirRelativePath\nWORKDIR app/\n", []),
    # testUnmatchedVars
    ("var-arg", "\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n", []),
    ("var-inherited-arg", "\nFROM alpine AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n", []),
    ("var-run", "\nFROM alpine\nRUN echo $PATH\n", []),
    ("var-before-arg", "\nFROM alpine\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n",
     [("UndefinedVar", "Usage of undefined variable '$foo'", 3)]),
    ("var-suggest", "\nFROM alpine\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\n"
     "COPY $DIR_ASSET .\n", [("UndefinedVar", "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)", 6)]),
    ("var-path", "\nFROM alpine\nENV PATH=$PAHT:/tmp/bin\n",
     [("UndefinedVar", "Usage of undefined variable '$PAHT' (did you mean $PATH?)", 3)]),
    # testAllTargetUnmarshal (--check: every stage)
    ("all-targets", "\nFROM scratch AS first\nCOPY $foo .\n\nFROM scratch AS second\nCOPY $bar .\n",
     [("UndefinedVar", "Usage of undefined variable '$foo'", 3), ("UndefinedVar", "Usage of undefined variable '$bar'", 6)]),
    # testMultipleInstructionsDisallowed
    ("multiple", "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myapp\"]\n"
     "CMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
     [("MultipleInstructionsDisallowed", f"Multiple {k} instructions should not be used in the same stage because "
       "only the last one will be used", n) for k, n in (("ENTRYPOINT", 3), ("CMD", 5), ("HEALTHCHECK", 7))]),
    ("multiple-apart", "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n"
     "COPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\n"
     "HEALTHCHECK CMD [\"/myotherapp\"]\n",
     [("MultipleInstructionsDisallowed", f"Multiple {k} instructions should not be used in the same stage because "
       "only the last one will be used", n) for k, n in (("ENTRYPOINT", 3), ("CMD", 4), ("HEALTHCHECK", 5))]),
    ("multiple-stages", "\nFROM scratch AS a\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n\n"
     "FROM a AS b\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n", []),
    # testLegacyKeyValueFormat
    ("legacy", "\nFROM scratch\nENV testkey value\nLABEL key value\n",
     [("LegacyKeyValueFormat", '"ENV key=value" should be used instead of legacy "ENV key value" format', 3),
      ("LegacyKeyValueFormat", '"LABEL key=value" should be used instead of legacy "LABEL key value" format', 4)]),
    ("not-legacy", "\nFROM scratch\nENV testkey=value\nLABEL key=value\n", []),
    ("legacy-skip", "\nFROM scratch\n# check=skip=LegacyKeyValueFormat\nENV testkey value\n"
     "# check=skip=LegacyKeyValueFormat\nLABEL key value\n", []),
    # testRedundantTargetPlatform
    ("redundant", "\nFROM --platform=$TARGETPLATFORM scratch\n",
     [("RedundantTargetPlatform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is "
       "the default behavior", 2)]),
    ("redundant-braces", "\nFROM --platform=${TARGETPLATFORM} scratch\n",
     [("RedundantTargetPlatform", "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this "
       "is the default behavior", 2)]),
    ("redundant-skip", "\n# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM scratch\n", []),
    # testInvalidDefaultArgInFrom (the build-arg given does not matter: defaults only)
    ("default-version", "\nARG VERSION\nFROM busybox:$VERSION\n",
     [("InvalidDefaultArgInFrom", "Default value for ARG busybox:$VERSION results in empty or invalid base image name", 3)]),
    ("default-image", "\nARG IMAGE\nFROM $IMAGE\n",
     [("InvalidDefaultArgInFrom", "Default value for ARG $IMAGE results in empty or invalid base image name", 3)]),
    ("default-sfx", "\nARG SFX=\"box:\"\nFROM busy${SFX}\n",
     [("InvalidDefaultArgInFrom", "Default value for ARG busy${SFX} results in empty or invalid base image name", 3)]),
    ("default-ok", "\nARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n", []),
    ("default-variant-empty", "\nARG BUSYBOX_VARIANT=\"\"\nFROM busybox:stable${BUSYBOX_VARIANT}\n", []),
    ("default-variant-unset", "\n\tARG BUSYBOX_VARIANT\n\tFROM busybox:stable${BUSYBOX_VARIANT}\n\t", []),
    # testFromPlatformFlagConstDisallowed
    ("const-platform", "\nFROM --platform=linux/amd64 scratch\n",
     [("FromPlatformFlagConstDisallowed", 'FROM --platform flag should not use constant value "linux/amd64"', 2)]),
    ("const-platform-named-arch", "\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n", []),
    ("const-platform-named-os", "\nFROM --platform=linux/amd64 scratch AS linux\n", []),
    # testExposeProtoCasing, testExposeInvalidFormat
    ("expose-proto", "\nFROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n",
     [("ExposeProtoCasing", "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase", 3),
      ("ExposeProtoCasing", "Defined protocol '8080/TCP' in EXPOSE instruction should be lowercase", 3)]),
    ("expose-format", "\nFROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n",
     [("ExposeInvalidFormat", f"EXPOSE instruction should not define an IP address or host-port mapping, found '{p}'", 3)
      for p in ("127.0.0.1:80:80", "5000:5000", "[::1]:8080:8080")]),
    # testRuleCheckOption
    ("check-skip-all", "#check=skip=all\nFROM scratch as base\ncopy Dockerfile .\n", []),
    ("check-skip-all-error", "#check=skip=all;error=true\nFROM scratch as base\ncopy Dockerfile .\n", []),
    ("check-skip-two", "#check=skip=ConsistentInstructionCasing,FromAsCasing\nFROM scratch as base\ncopy Dockerfile .\n", []),
    ("check-skip-one", "#check=skip=ConsistentInstructionCasing\nFROM scratch as base\ncopy Dockerfile .\n",
     [("FromAsCasing", "'as' and 'FROM' keywords' casing do not match", 2)]),
]

SECRETS = """# check=skip=InvalidDefinitionDescription

FROM scratch
ARG SECRET_PASSPHRASE
ENV SUPER_Secret=foo
ENV password=bar secret=baz
ARG super_duper_secret_token=foo auth=bar
ENV apikey=bar sunflower=foo
ENV git_key=
ENV PUBLIC_KEY=
ARG public_token
ARG SECRET_PASSPHRASE_FILE
ENV password_file=bar secret_File=baz
ARG AUTH_MODULE_VERSION
# check=skip=SecretsUsedInArgOrEnv // allow secret in environment
ENV password=bar
# check=skip=SecretsUsedInArgOrEnv // allow secret in arg
ARG password
# check=skip=all // is local to only this instruction
ENV alternate_password=bar
# check=skip=all // is local to only this instruction
ARG alternate_password
"""


@pytest.mark.parametrize(("name", "dockerfile", "expected"), CASES, ids=[c[0] for c in CASES])
def test_buildkit_lint_cases(name: str, dockerfile: str, expected: list[W]) -> None:
    assert _found(dockerfile) == sorted(expected, key=lambda w: (w[2], w[1]))


def test_secrets_used_in_arg_or_env() -> None:
    msg = 'Do not use ARG or ENV instructions for sensitive data ({} "{}")'
    assert _found(SECRETS) == [("SecretsUsedInArgOrEnv", msg.format(k, n), line) for k, n, line in (
        ("ARG", "SECRET_PASSPHRASE", 4), ("ENV", "SUPER_Secret", 5), ("ENV", "password", 6), ("ENV", "secret", 6),
        ("ARG", "auth", 7), ("ARG", "super_duper_secret_token", 7), ("ENV", "apikey", 8), ("ENV", "git_key", 9))]


def test_a_build_reports_only_the_stages_it_reaches() -> None:
    """testAllTargetUnmarshal and testLegacyKeyValueFormat: building the last stage reports its
    own dispatch warnings, not those of a stage it does not use."""
    text = "\nFROM scratch AS first\nCOPY $foo .\n\nFROM scratch AS second\nCOPY $bar .\n"
    assert _found(text, reachable={1}) == [("UndefinedVar", "Usage of undefined variable '$bar'", 6)]
    text = "\nFROM scratch AS a\n\nFROM a AS b\nENV testkey value\nLABEL key value\n\nFROM a AS c\n"
    assert _found(text, reachable={0, 2}) == []
    assert len(_found(text)) == 2


def test_copy_ignored_files() -> None:
    """testCopyIgnoredFiles and testCopyIgnoredFileContextRoot."""
    text = "\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n"
    assert _found(text, ignore="\nDockerfile\n") == [
        ("CopyIgnoredFile", 'Attempting to Copy file "Dockerfile" that is excluded by .dockerignore', 3),
        ("CopyIgnoredFile", 'Attempting to Add file "Dockerfile" that is excluded by .dockerignore', 4)]
    assert _found("# check=skip=CopyIgnoredFile\n" + text, ignore="\nDockerfile\n") == []
    stages = "\nFROM scratch AS base\nCOPY Dockerfile /foobar\nADD Dockerfile /windy\n\nFROM base\n" \
             "COPY --from=base /foobar /Dockerfile\n"
    assert _found(stages, ignore="\nfoobar\n") == []
    assert _found("\nFROM scratch\nCOPY ./Dockerfile .\n", ignore="\n**\n!Dockerfile\n") == []
    assert _found("\nFROM scratch\nCOPY . .\n", ignore="\n**\n!Dockerfile\n") == []
    assert _found("\nFROM scratch\nCOPY . .\n", ignore="\n.*\n") == []
    assert _found("\nFROM scratch\nCOPY . .\n", ignore="\n*\n") == [
        ("CopyIgnoredFile", 'Attempting to Copy file "." that is excluded by .dockerignore', 3)]


def test_check_directive_and_build_arg() -> None:
    """testRuleCheckOption: error=true fails on what is reported; BUILDKIT_DOCKERFILE_CHECK
    replaces the directive."""
    text = "#check=skip=ConsistentInstructionCasing;error=true\nFROM scratch as base\ncopy Dockerfile .\n"
    assert _lint(text).error == "lint violation found for rules: FromAsCasing"
    assert _lint("#check=skip=all;error=true\nFROM scratch as base\ncopy Dockerfile .\n").error is None
    replaced = _lint("#check=skip=all\nFROM scratch as base\ncopy Dockerfile .\n",
                     build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=ConsistentInstructionCasing;error=true"})
    assert [v.rule.name for v in replaced.violations] == ["FromAsCasing"]
    assert replaced.error == "lint violation found for rules: FromAsCasing"
    silenced = _lint("#check=error=true\nFROM scratch as base\ncopy Dockerfile .\n",
                     build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=all"})
    assert silenced.violations == [] and silenced.error is None
    with pytest.raises(BuildError, match="invalid check option"):
        parse_check_options("skip")
    with pytest.raises(BuildError, match="not a boolean"):
        parse_check_options("error=maybe")


def test_warnings_carry_the_rule_url_and_description() -> None:
    (v,) = _lint("FROM scratch\nMAINTAINER me\n").violations
    assert v.rule.url == "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"
    assert v.rule.description == "The MAINTAINER instruction is deprecated, use a label instead to define an image author"
    assert v.short() == "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)"


def test_base_image_env_defines_variables_and_its_platform_is_checked() -> None:
    def base(ref: str, platform: str) -> BaseInfo:
        return BaseInfo({"PATH": "/bin", "APP_HOME": "/app"}, None, "linux/arm64")

    text = "FROM app\nCOPY $APP_HOME/x $APP_HOMEE/y\n"
    assert _found(text, base_image=base) == [
        ("InvalidBaseImagePlatform", 'Base image app was pulled with platform "linux/arm64", expected '
                                     '"linux/amd64" for current build', 1),
        ("UndefinedVar", "Usage of undefined variable '$APP_HOMEE' (did you mean $APP_HOME?)", 2)]


def test_suggest_is_buildkits_levenshtein_search() -> None:
    assert suggest("BULIDPLATFORM", ["BUILDPLATFORM", "TARGETOS"]) == "BUILDPLATFORM"
    assert suggest("abc", ["xyz"]) == "" and suggest("PATH", ["PATH"]) == ""
