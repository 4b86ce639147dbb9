"""The Dockerfile language, pure: no I/O, no LLB.

Stages (each usable on its own):

1. :func:`parse_ast` — bytes → :class:`Ast` of :class:`Node` (directives, comments,
   continuations, JSON/shell forms, flags, heredocs, line ranges);
2. :class:`ShellLex` / :func:`expand_word` — shell-word expansion of ``$VAR`` forms;
"""

from ._directives import CheckConfig, Directive, find_directive
from ._parser import Ast, Heredoc, Node, ParseWarning, parse_ast, parse_heredoc
from ._shell import ExpansionResult, ShellLex, expand_word, expand_words

__all__ = [
    "Ast",
    "CheckConfig",
    "Directive",
    "ExpansionResult",
    "Heredoc",
    "Node",
    "ParseWarning",
    "ShellLex",
    "expand_word",
    "expand_words",
    "find_directive",
    "parse_ast",
    "parse_heredoc",
]
