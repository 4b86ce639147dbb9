"""The Dockerfile language, pure: no I/O beyond reading ignore files, no LLB.

Stages, each usable and tested on its own:

1. :func:`parse_ast` — bytes → :class:`Ast` of :class:`Node` (directives, comments,
   continuations, JSON/shell forms, flags, heredocs, line ranges);
2. :class:`ShellLex` / :func:`expand_word` — shell-word expansion of ``$VAR`` forms;
3. :func:`parse_dockerfile` — typed, validated instructions grouped into :class:`Stage`
   values; each instruction's :meth:`~Instruction.expand` applies BuildKit's expansion
   rules through an :class:`Expander`;
4. :func:`lint` — the build checks (``# check=`` directive honoured);
5. :func:`load_dockerignore` — the ``.dockerignore`` that applies, as patterns;
6. :func:`convert` — LLB (an :class:`~dockyard.llb.State`) and image config for a target,
   given :class:`ConvertOptions` and an :class:`ImageMetaResolver` for base images
   (pure: named build contexts arrive as :class:`NamedContext` values).
Errors are :class:`dockyard.core.FrontendError` located at ``Dockerfile:LINE``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._chmod import Chmod, ChmodError, parse_chmod
    from ._convert import convert
    from ._convert_context import ContextSpec, load_named_context, parse_context_spec
    from ._convert_options import (
        ConvertOptions,
        ConvertResult,
        ImageMetaResolver,
        NamedContext,
        ResolvedImage,
        StageResult,
        UnresolvedImages,
    )
    from ._directives import CheckConfig, Directive, find_directive
    from ._dockerfile import (
        INSTRUCTIONS,
        Dockerfile,
        Stage,
        parse_dockerfile,
        parse_instruction,
        parse_onbuild_trigger,
    )
    from ._dockerignore import (
        DOCKERIGNORE,
        IgnoreFile,
        dockerignore_candidates,
        load_dockerignore,
        parse_dockerignore,
        read_dockerignore,
    )
    from ._instructions import (
        AddInstruction,
        ArgDef,
        ArgInstruction,
        CmdInstruction,
        CopyInstruction,
        EntrypointInstruction,
        EnvInstruction,
        Expander,
        ExposeInstruction,
        FromInstruction,
        HealthcheckInstruction,
        InlineSource,
        Instruction,
        KeyValue,
        LabelInstruction,
        MaintainerInstruction,
        OnbuildInstruction,
        RunInstruction,
        ShellInstruction,
        StopsignalInstruction,
        UserInstruction,
        VolumeInstruction,
        WordExpander,
        WorkdirInstruction,
    )
    from ._lint import BaseImage, lint
    from ._mounts import (
        CacheSharing,
        MountError,
        MountType,
        NetworkMode,
        RunMount,
        SecurityMode,
        parse_mount,
    )
    from ._parser import Ast, Heredoc, Node, ParseWarning, chomp_heredoc, parse_ast, parse_heredoc
    from ._rules import PLATFORM_ARGS, RULES, Linter, LintReport, Rule
    from ._shell import ExpansionResult, ShellLex, expand_word, expand_words
    from ._values import BadValue, parse_checksum, parse_duration, parse_ports, parse_signal

# Each name loads with the module that defines it, on first use: naming a value (the
# network mode of a frontend's options) does not load the parser and the converter.
_LAZY = {
    "Chmod": "._chmod",
    "ChmodError": "._chmod",
    "parse_chmod": "._chmod",
    "convert": "._convert",
    "ContextSpec": "._convert_context",
    "load_named_context": "._convert_context",
    "parse_context_spec": "._convert_context",
    "ConvertOptions": "._convert_options",
    "ConvertResult": "._convert_options",
    "ImageMetaResolver": "._convert_options",
    "NamedContext": "._convert_options",
    "ResolvedImage": "._convert_options",
    "StageResult": "._convert_options",
    "UnresolvedImages": "._convert_options",
    "CheckConfig": "._directives",
    "Directive": "._directives",
    "find_directive": "._directives",
    "INSTRUCTIONS": "._dockerfile",
    "Dockerfile": "._dockerfile",
    "Stage": "._dockerfile",
    "parse_dockerfile": "._dockerfile",
    "parse_instruction": "._dockerfile",
    "parse_onbuild_trigger": "._dockerfile",
    "DOCKERIGNORE": "._dockerignore",
    "IgnoreFile": "._dockerignore",
    "dockerignore_candidates": "._dockerignore",
    "load_dockerignore": "._dockerignore",
    "parse_dockerignore": "._dockerignore",
    "read_dockerignore": "._dockerignore",
    "AddInstruction": "._instructions",
    "ArgDef": "._instructions",
    "ArgInstruction": "._instructions",
    "CmdInstruction": "._instructions",
    "CopyInstruction": "._instructions",
    "EntrypointInstruction": "._instructions",
    "EnvInstruction": "._instructions",
    "Expander": "._instructions",
    "ExposeInstruction": "._instructions",
    "FromInstruction": "._instructions",
    "HealthcheckInstruction": "._instructions",
    "InlineSource": "._instructions",
    "Instruction": "._instructions",
    "KeyValue": "._instructions",
    "LabelInstruction": "._instructions",
    "MaintainerInstruction": "._instructions",
    "OnbuildInstruction": "._instructions",
    "RunInstruction": "._instructions",
    "ShellInstruction": "._instructions",
    "StopsignalInstruction": "._instructions",
    "UserInstruction": "._instructions",
    "VolumeInstruction": "._instructions",
    "WordExpander": "._instructions",
    "WorkdirInstruction": "._instructions",
    "BaseImage": "._lint",
    "lint": "._lint",
    "CacheSharing": "._mounts",
    "MountError": "._mounts",
    "MountType": "._mounts",
    "NetworkMode": "._mounts",
    "RunMount": "._mounts",
    "SecurityMode": "._mounts",
    "parse_mount": "._mounts",
    "Ast": "._parser",
    "Heredoc": "._parser",
    "Node": "._parser",
    "ParseWarning": "._parser",
    "chomp_heredoc": "._parser",
    "parse_ast": "._parser",
    "parse_heredoc": "._parser",
    "PLATFORM_ARGS": "._rules",
    "RULES": "._rules",
    "Linter": "._rules",
    "LintReport": "._rules",
    "Rule": "._rules",
    "ExpansionResult": "._shell",
    "ShellLex": "._shell",
    "expand_word": "._shell",
    "expand_words": "._shell",
    "BadValue": "._values",
    "parse_checksum": "._values",
    "parse_duration": "._values",
    "parse_ports": "._values",
    "parse_signal": "._values",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DOCKERIGNORE",
    "INSTRUCTIONS",
    "PLATFORM_ARGS",
    "RULES",
    "AddInstruction",
    "ArgDef",
    "ArgInstruction",
    "Ast",
    "BadValue",
    "BaseImage",
    "CacheSharing",
    "CheckConfig",
    "Chmod",
    "ChmodError",
    "CmdInstruction",
    "ContextSpec",
    "ConvertOptions",
    "ConvertResult",
    "CopyInstruction",
    "Directive",
    "Dockerfile",
    "EntrypointInstruction",
    "EnvInstruction",
    "Expander",
    "ExpansionResult",
    "ExposeInstruction",
    "FromInstruction",
    "HealthcheckInstruction",
    "Heredoc",
    "IgnoreFile",
    "ImageMetaResolver",
    "InlineSource",
    "Instruction",
    "KeyValue",
    "LabelInstruction",
    "LintReport",
    "Linter",
    "MaintainerInstruction",
    "MountError",
    "MountType",
    "NamedContext",
    "NetworkMode",
    "Node",
    "OnbuildInstruction",
    "ParseWarning",
    "ResolvedImage",
    "Rule",
    "RunInstruction",
    "RunMount",
    "SecurityMode",
    "ShellInstruction",
    "ShellLex",
    "Stage",
    "StageResult",
    "StopsignalInstruction",
    "UnresolvedImages",
    "UserInstruction",
    "VolumeInstruction",
    "WordExpander",
    "WorkdirInstruction",
    "chomp_heredoc",
    "convert",
    "dockerignore_candidates",
    "expand_word",
    "expand_words",
    "find_directive",
    "lint",
    "load_dockerignore",
    "load_named_context",
    "parse_ast",
    "parse_checksum",
    "parse_chmod",
    "parse_context_spec",
    "parse_dockerfile",
    "parse_dockerignore",
    "parse_duration",
    "parse_heredoc",
    "parse_instruction",
    "parse_mount",
    "parse_onbuild_trigger",
    "parse_ports",
    "parse_signal",
    "read_dockerignore",
]
