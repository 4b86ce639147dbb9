"""The build-check rules (names, descriptions, URLs as BuildKit's) and the
:class:`Linter` that records warnings for them under a :class:`CheckConfig`."""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from dockyard.core import BuildWarning, FrontendError, SourceLocation

from ._directives import CheckConfig
from ._text import suggest

__all__ = [
    "NON_ENV_ARGS",
    "PLATFORM_ARGS",
    "RULES",
    "LintReport",
    "Linter",
    "Rule",
    "warning_message",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    description: str
    url: str
    experimental: bool = False  # runs only when ``# check=experimental=`` names it


def _rule(name: str, slug: str, description: str, *, experimental: bool = False) -> Rule:
    return Rule(
        name=name,
        description=description,
        url=f"https://docs.docker.com/go/dockerfile/rule/{slug}/",
        experimental=experimental,
    )


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        _rule(
            "StageNameCasing",
            "stage-name-casing",
            "Stage names should be lowercase",
        ),
        _rule(
            "FromAsCasing",
            "from-as-casing",
            "The 'as' keyword should match the case of the 'from' keyword",
        ),
        _rule(
            "NoEmptyContinuation",
            "no-empty-continuation",
            "Empty continuation lines will become errors in a future release",
        ),
        _rule(
            "ConsistentInstructionCasing",
            "consistent-instruction-casing",
            "All commands within the Dockerfile should use the same casing (either upper or lower)",
        ),
        _rule(
            "DuplicateStageName",
            "duplicate-stage-name",
            "Stage names should be unique",
        ),
        _rule(
            "ReservedStageName",
            "reserved-stage-name",
            "Reserved words should not be used as stage names",
        ),
        _rule(
            "JSONArgsRecommended",
            "json-args-recommended",
            "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior "
            "related to OS signals",
        ),
        _rule(
            "MaintainerDeprecated",
            "maintainer-deprecated",
            "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        ),
        _rule(
            "UndefinedArgInFrom",
            "undefined-arg-in-from",
            "FROM command must use declared ARGs",
        ),
        _rule(
            "WorkdirRelativePath",
            "workdir-relative-path",
            "Relative workdir without an absolute workdir declared within the build can have "
            "unexpected results if the base image changes",
        ),
        _rule(
            "UndefinedVar",
            "undefined-var",
            "Variables should be defined before their use",
        ),
        _rule(
            "MultipleInstructionsDisallowed",
            "multiple-instructions-disallowed",
            "Multiple instructions of the same type should not be used in the same stage",
        ),
        _rule(
            "LegacyKeyValueFormat",
            "legacy-key-value-format",
            "Legacy key/value format with whitespace separator should not be used",
        ),
        _rule(
            "RedundantTargetPlatform",
            "redundant-target-platform",
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is "
            "the default behavior",
        ),
        _rule(
            "SecretsUsedInArgOrEnv",
            "secrets-used-in-arg-or-env",
            "Sensitive data should not be used in the ARG or ENV commands",
        ),
        _rule(
            "InvalidDefaultArgInFrom",
            "invalid-default-arg-in-from",
            "Default value for global ARG results in an empty or invalid base image name",
        ),
        _rule(
            "FromPlatformFlagConstDisallowed",
            "from-platform-flag-const-disallowed",
            "FROM --platform flag should not use a constant value",
        ),
        _rule(
            "ExposeProtoCasing",
            "expose-proto-casing",
            "Protocol in EXPOSE instruction should be lowercase",
        ),
        _rule(
            "ExposeInvalidFormat",
            "expose-invalid-format",
            "IP address and host-port mapping should not be used in EXPOSE instruction. "
            "This will become an error in a future release",
        ),
        _rule(
            "InvalidBaseImagePlatform",
            "invalid-base-image-platform",
            "Base image platform does not match expected target platform",
        ),
        _rule(
            "InvalidDefinitionDescription",
            "invalid-definition-description",
            "Comment for build stage or argument should follow the format: "
            "`# <arg/stage name> <description>`. If this is not intended to be a "
            "description comment, add an empty line or comment between the instruction "
            "and the comment.",
            experimental=True,
        ),
        _rule(
            "CopyIgnoredFile",
            "copy-ignored-file",
            "Attempting to Copy file that is excluded by .dockerignore",
        ),
    )
}

# Build arguments every build defines (BuildKit's defaultArgs).
PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
)
# Arguments that configure BuildKit and never become environment variables.
NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})


class Linter:
    """Collects warnings for one Dockerfile, honouring its :class:`CheckConfig`.

    The converter uses the same object for the checks it runs while converting
    (``UndefinedVar`` through :meth:`undefined_vars`, or any rule through :meth:`run`).
    """

    __slots__ = ("called", "config", "warnings")

    def __init__(self, config: CheckConfig | None = None) -> None:
        self.config = config or CheckConfig()
        self.warnings: list[BuildWarning] = []
        self.called: list[str] = []

    def run(self, rule_name: str, message: str, location: SourceLocation | None) -> None:
        """Report ``message`` for ``rule_name`` unless the rule is skipped."""
        rule = RULES[rule_name]
        if not self.config.enabled(rule_name, experimental=rule.experimental):
            return
        self.called.append(rule_name)
        line = _line(location)
        short = f"{rule_name}: {message}" + (f" (line {line})" if line > 0 else "")
        self.warnings.append(
            BuildWarning(
                short=short,
                detail=(rule.description,),
                url=rule.url,
                rule=rule_name,
                locations=(location,) if location is not None else (),
            )
        )

    def undefined_vars(
        self,
        unmatched: Iterable[str],
        *,
        build_args: Iterable[str],
        env_keys: Iterable[str],
        location: SourceLocation,
    ) -> None:
        """Report ``UndefinedVar`` for variables an instruction used but nothing defined.

        ``build_args`` are the ``ARG`` names declared in the stage so far (declared
        without a value counts as defined), ``env_keys`` the environment's names (used
        for "did you mean" suggestions).
        """
        names = [name for name in unmatched if name not in NON_ENV_ARGS]
        if not names:
            return  # the usual case: no copy of the names per instruction (quadratic)
        declared = build_args if isinstance(build_args, Container) else set(build_args)
        options: list[str] | None = None
        for name in names:
            if name in declared:
                continue
            if options is None:
                options = list(env_keys)
            hint = suggest(name, options, case_sensitive=True)
            message = f"Usage of undefined variable '${name}'"
            if hint:
                message += f" (did you mean ${hint}?)"
            self.run("UndefinedVar", message, location)

    def report(self) -> LintReport:
        return LintReport(warnings=tuple(self.warnings), config=self.config)


def warning_message(warning: BuildWarning) -> str:
    """The message :meth:`Linter.run` reported ``warning`` with (BuildKit's ``detail``
    of a lint warning): its ``short`` form without the rule name before it and the
    ``(line N)`` after it."""
    text = warning.short.removeprefix(f"{warning.rule}: ") if warning.rule else warning.short
    line = _line(warning.locations[0] if warning.locations else None)
    return text.removesuffix(f" (line {line})") if line > 0 else text


def _line(location: SourceLocation | None) -> int:
    return location.ranges[0].start if location is not None and location.ranges else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LintReport:
    """The warnings of a check run and the settings they were made with."""

    warnings: tuple[BuildWarning, ...]
    config: CheckConfig = field(default_factory=CheckConfig)

    def error(self) -> FrontendError | None:
        """With ``# check=error=true`` and any warning: the error that fails the build."""
        if not self.config.error or not self.warnings:
            return None
        rules = sorted({w.rule for w in self.warnings})
        return FrontendError(
            f"lint violation found for rules: {', '.join(rules)}",
            locations=self.warnings[0].locations,
        )
