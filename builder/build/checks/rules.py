"""The build-check rules as BuildKit defines them (frontend/dockerfile/linter/ruleset.go): name,
description, documentation URL and the message of each violation."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rule", "RULES"]

_DOCS = "https://docs.docker.com/go/dockerfile/rule/"


@dataclass(frozen=True, slots=True)
class Rule:
    """One check; `message` is a format string filled with the violation's words."""

    name: str
    description: str
    message: str
    url: str = ""
    experimental: bool = False

    def format(self, *words: str) -> str:
        return self.message.format(*words)


def _rule(name: str, slug: str | None, description: str, message: str, experimental: bool = False) -> Rule:
    return Rule(name, description, message, _DOCS + slug + "/" if slug else "", experimental)


RULES: dict[str, Rule] = {r.name: r for r in (
    _rule("StageNameCasing", "stage-name-casing", "Stage names should be lowercase",
          "Stage name '{}' should be lowercase"),
    _rule("FromAsCasing", "from-as-casing", "The 'as' keyword should match the case of the 'from' keyword",
          "'{}' and '{}' keywords' casing do not match"),
    _rule("NoEmptyContinuation", "no-empty-continuation",
          "Empty continuation lines will become errors in a future release", "Empty continuation line"),
    _rule("ConsistentInstructionCasing", "consistent-instruction-casing",
          "All commands within the Dockerfile should use the same casing (either upper or lower)",
          "Command '{}' should match the case of the command majority ({})"),
    _rule("DuplicateStageName", "duplicate-stage-name", "Stage names should be unique",
          "Duplicate stage name \"{}\", stage names should be unique"),
    _rule("ReservedStageName", "reserved-stage-name", "Reserved words should not be used as stage names",
          "Stage name should not use the same name as reserved stage \"{}\""),
    _rule("JSONArgsRecommended", "json-args-recommended",
          "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
          "JSON arguments recommended for {} to prevent unintended behavior related to OS signals"),
    _rule("MaintainerDeprecated", "maintainer-deprecated",
          "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
          "Maintainer instruction is deprecated in favor of using label"),
    _rule("UndefinedArgInFrom", "undefined-arg-in-from", "FROM command must use declared ARGs",
          "FROM argument '{}' is not declared{}"),
    _rule("WorkdirRelativePath", "workdir-relative-path",
          "Relative workdir without an absolute workdir declared within the build can have unexpected "
          "results if the base image changes",
          "Relative workdir \"{}\" can have unexpected results if the base image changes"),
    _rule("UndefinedVar", "undefined-var", "Variables should be defined before their use",
          "Usage of undefined variable '${}'{}"),
    _rule("MultipleInstructionsDisallowed", "multiple-instructions-disallowed",
          "Multiple instructions of the same type should not be used in the same stage",
          "Multiple {} instructions should not be used in the same stage because only the last one will be used"),
    _rule("LegacyKeyValueFormat", "legacy-key-value-format",
          "Legacy key/value format with whitespace separator should not be used",
          "\"{0} key=value\" should be used instead of legacy \"{0} key value\" format"),
    _rule("InvalidBaseImagePlatform", None, "Base image platform does not match expected target platform",
          "Base image {} was pulled with platform \"{}\", expected \"{}\" for current build"),
    _rule("RedundantTargetPlatform", "redundant-target-platform",
          "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
          "Setting platform to predefined {} in FROM is redundant as this is the default behavior"),
    _rule("SecretsUsedInArgOrEnv", "secrets-used-in-arg-or-env",
          "Sensitive data should not be used in the ARG or ENV commands",
          "Do not use ARG or ENV instructions for sensitive data ({} \"{}\")"),
    _rule("InvalidDefaultArgInFrom", "invalid-default-arg-in-from",
          "Default value for global ARG results in an empty or invalid base image name",
          "Default value for ARG {} results in empty or invalid base image name"),
    _rule("FromPlatformFlagConstDisallowed", "from-platform-flag-const-disallowed",
          "FROM --platform flag should not use a constant value",
          "FROM --platform flag should not use constant value \"{}\""),
    _rule("CopyIgnoredFile", "copy-ignored-file", "Attempting to Copy file that is excluded by .dockerignore",
          "Attempting to {} file \"{}\" that is excluded by .dockerignore"),
    _rule("InvalidDefinitionDescription", "invalid-definition-description",
          "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If "
          "this is not intended to be a description comment, add an empty line or comment between the instruction "
          "and the comment.", "Comment for {} should follow the format: `# {} <description>`", experimental=True),
    _rule("ExposeProtoCasing", "expose-proto-casing", "Protocol in EXPOSE instruction should be lowercase",
          "Defined protocol '{}' in EXPOSE instruction should be lowercase"),
    _rule("ExposeInvalidFormat", "expose-invalid-format",
          "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error "
          "in a future release",
          "EXPOSE instruction should not define an IP address or host-port mapping, found '{}'"),
)}
