"""Typed instructions: one frozen value per Dockerfile instruction, flags parsed.

Every instruction carries ``name`` (as written, e.g. ``run``), ``location`` (its line
range in the file) and ``original`` (its source text on one line). Words are kept as
written; :meth:`Instruction.expand` returns a copy with the words BuildKit expands
(the instruction's own rules, see each class) expanded through a :class:`WordExpander`
— usually an :class:`Expander` over the stage's environment, which also records the
variable names it could not find (for the ``UndefinedVar`` check).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, Self

from dockyard.core import FrontendError, SourceLocation

from ._chmod import Chmod, ChmodError, parse_chmod
from ._mounts import MountError, NetworkMode, RunDevice, RunMount, SecurityMode, parse_mount
from ._parser import Heredoc, Node
from ._shell import ShellLex
from ._values import BadValue, parse_add_checksum, parse_signal

__all__ = [
    "AddInstruction",
    "ArgDef",
    "ArgInstruction",
    "CmdInstruction",
    "CopyInstruction",
    "EntrypointInstruction",
    "EnvInstruction",
    "Expander",
    "ExposeInstruction",
    "FromInstruction",
    "HealthcheckInstruction",
    "InlineSource",
    "Instruction",
    "KeyValue",
    "LabelInstruction",
    "MaintainerInstruction",
    "OnbuildInstruction",
    "RunInstruction",
    "ShellInstruction",
    "StopsignalInstruction",
    "UserInstruction",
    "VolumeInstruction",
    "WordExpander",
    "WorkdirInstruction",
]


class WordExpander(Protocol):
    """What :meth:`Instruction.expand` needs: expand one word, expand and split a word,
    and expand a heredoc body (quotes are not special there). Each raises
    :class:`FrontendError` on bad syntax."""

    def word(self, text: str) -> str: ...

    def words(self, text: str) -> tuple[str, ...]: ...

    def raw(self, text: str) -> str: ...


class Expander:
    """Expands words with one environment and remembers which names were used.

    ``unmatched`` collects the variables referenced but not set in ``env``, ``matched``
    those found (words in the order expanded, names sorted within a word).
    """

    __slots__ = ("_lex", "_raw_lex", "env", "matched", "unmatched")

    def __init__(self, env: Mapping[str, str], *, escape: str = "\\") -> None:
        self.env = env
        self._lex = ShellLex(escape)
        # Heredoc bodies: quotes are plain characters and the escape is always "\".
        self._raw_lex = ShellLex("\\", skip_process_quotes=True)
        self.matched: dict[str, None] = {}
        self.unmatched: dict[str, None] = {}

    def _record(self, matched: frozenset[str], unmatched: frozenset[str]) -> None:
        for name in sorted(matched):
            self.matched.setdefault(name)
        for name in sorted(unmatched):
            self.unmatched.setdefault(name)

    def word(self, text: str) -> str:
        result = self._lex.process(text, self.env)
        self._record(result.matched, result.unmatched)
        return result.value

    def words(self, text: str) -> tuple[str, ...]:
        result = self._lex.process(text, self.env)
        self._record(result.matched, result.unmatched)
        return result.words

    def raw(self, text: str) -> str:
        result = self._raw_lex.process(text, self.env)
        self._record(result.matched, result.unmatched)
        return result.value


def _located(location: SourceLocation, exc: FrontendError) -> FrontendError:
    return FrontendError(exc.message, locations=(location,))


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValue:
    """A pair of ``ENV`` or ``LABEL``; ``legacy`` for the ``KEY value`` form."""

    key: str
    value: str
    legacy: bool = False

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgDef:
    """One name of an ``ARG``, with its default value if it has one."""

    key: str
    value: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InlineSource:
    """A heredoc used as a ``COPY``/``ADD`` source: a file named ``path`` with ``data``;
    ``expand`` says whether ``data`` gets variable expansion (unquoted delimiter)."""

    path: str
    data: str
    expand: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    """Base of all instructions."""

    name: str
    location: SourceLocation
    original: str

    @property
    def keyword(self) -> str:
        """The instruction in upper case (``RUN``)."""
        return self.name.upper()

    @property
    def line(self) -> int:
        return self.location.ranges[0].start if self.location.ranges else 0

    def __str__(self) -> str:
        return self.original

    def expand(self, expander: WordExpander) -> Self:
        """A copy with variables expanded where BuildKit expands them (here: nowhere)."""
        return self

    def error(self, message: str) -> FrontendError:
        """A :class:`FrontendError` located at this instruction."""
        return FrontendError(message, locations=(self.location,))


@dataclass(frozen=True, slots=True, kw_only=True)
class FromInstruction(Instruction):
    """``FROM [--platform=P] base [AS name]``. ``stage_name`` is lower-cased;
    ``stage_name_written`` and ``as_word`` keep the original spelling (for checks).
    ``comment`` is the stage's description (``# <name> <description>`` above it),
    ``prev_comment`` the comment line right above the instruction (``""``: none)."""

    base: str
    stage_name: str | None = None
    stage_name_written: str | None = None
    as_word: str | None = None
    platform: str | None = None
    comment: str = ""
    prev_comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInstruction(Instruction):
    """``RUN``. ``command`` is the exec form array or, with ``shell_form``, one string for
    the shell. ``heredocs`` are the here-documents of the line, in order.

    ``mount_specs`` are the ``--mount`` values as written; ``mounts`` their parsed form,
    ``None`` until :meth:`expand` when the specs use variables (mount values are the only
    words of ``RUN`` that are expanded). ``devices`` are the ``--device`` values (CDI
    devices, BuildKit 0.20+).
    """

    command: tuple[str, ...] = ()
    shell_form: bool = True
    heredocs: tuple[Heredoc, ...] = ()
    mount_specs: tuple[str, ...] = ()
    mounts: tuple[RunMount, ...] | None = ()
    network: NetworkMode | None = None
    security: SecurityMode | None = None
    devices: tuple[RunDevice, ...] = ()
    flags_used: tuple[str, ...] = ()

    def expand(self, expander: WordExpander) -> Self:
        if not self.mount_specs:
            return self
        try:
            mounts = tuple(parse_mount(spec, expander.word) for spec in self.mount_specs)
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        except MountError as exc:
            raise self.error(f"RUN --mount: {exc}") from None
        return dataclasses.replace(self, mounts=mounts)


@dataclass(frozen=True, slots=True, kw_only=True)
class CmdInstruction(Instruction):
    """``CMD``: exec form array, or one string with ``shell_form``."""

    command: tuple[str, ...] = ()
    shell_form: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EntrypointInstruction(Instruction):
    """``ENTRYPOINT``: exec form array, or one string with ``shell_form``."""

    command: tuple[str, ...] = ()
    shell_form: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelInstruction(Instruction):
    """``LABEL k=v ...`` (keys and values expanded)."""

    labels: tuple[KeyValue, ...] = ()

    def expand(self, expander: WordExpander) -> Self:
        try:
            labels = tuple(
                KeyValue(key=expander.word(kv.key), value=expander.word(kv.value), legacy=kv.legacy)
                for kv in self.labels
            )
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        return dataclasses.replace(self, labels=labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintainerInstruction(Instruction):
    """``MAINTAINER`` (deprecated; becomes the image author)."""

    maintainer: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposeInstruction(Instruction):
    """``EXPOSE``: port words as written, sorted as BuildKit sorts them. Expansion may
    split a word into several ports (``EXPOSE $PORTS``)."""

    ports: tuple[str, ...] = ()

    def expand(self, expander: WordExpander) -> Self:
        try:
            ports = tuple(port for word in self.ports for port in expander.words(word))
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        return dataclasses.replace(self, ports=ports)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvInstruction(Instruction):
    """``ENV k=v ...`` (keys and values expanded, all with the environment from before
    the instruction: ``ENV A=1 B=$A`` gives B the old value of A)."""

    env: tuple[KeyValue, ...] = ()

    def expand(self, expander: WordExpander) -> Self:
        try:
            env = tuple(
                KeyValue(key=expander.word(kv.key), value=expander.word(kv.value), legacy=kv.legacy)
                for kv in self.env
            )
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        return dataclasses.replace(self, env=env)


@dataclass(frozen=True, slots=True, kw_only=True)
class _CopyBase(Instruction):
    sources: tuple[str, ...] = ()
    contents: tuple[InlineSource, ...] = ()
    dest: str = ""
    chown: str | None = None
    chmod: str | None = None
    mode: Chmod | None = None  # ``chmod`` parsed; ``None`` until expanded if it uses variables
    link: bool = False
    excludes: tuple[str, ...] = ()

    def _expand_common(self, expander: WordExpander) -> dict[str, object]:
        try:
            changes: dict[str, object] = {
                "sources": tuple(expander.word(src) for src in self.sources),
                "dest": expander.word(self.dest),
                "excludes": tuple(expander.word(p) for p in self.excludes),
                "contents": tuple(
                    InlineSource(path=c.path, data=expander.raw(c.data), expand=c.expand)
                    if c.expand
                    else c
                    for c in self.contents
                ),
            }
            if self.chown is not None:
                changes["chown"] = expander.word(self.chown)
            if self.chmod is not None:
                chmod = expander.word(self.chmod)
                changes["chmod"] = chmod
                changes["mode"] = parse_chmod(chmod)
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        except ChmodError as exc:
            raise self.error(f"{self.keyword} --chmod: {exc}") from None
        return changes


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyInstruction(_CopyBase):
    """``COPY [--from=stage] [--chown] [--chmod] [--link] [--parents] [--exclude=p]...
    src... dest``. ``contents`` are heredoc sources. Sources, destination, ``--chown``,
    ``--chmod``, ``--exclude`` and expandable heredoc bodies are expanded; ``--from``
    is not (it names a stage, image or build context)."""

    from_stage: str | None = None
    parents: bool = False

    def expand(self, expander: WordExpander) -> Self:
        return dataclasses.replace(self, **self._expand_common(expander))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class AddInstruction(_CopyBase):
    """``ADD [--chown] [--chmod] [--link] [--exclude=p]... [--keep-git-dir] [--checksum=d]
    [--unpack[=bool]] src... dest``. ``unpack`` is ``None`` unless the flag was given
    (then local archives are unpacked, remote ones are not by default)."""

    keep_git_dir: bool = False
    checksum: str | None = None
    unpack: bool | None = None

    def expand(self, expander: WordExpander) -> Self:
        changes = self._expand_common(expander)
        if self.checksum is not None:
            try:
                checksum = expander.word(self.checksum)
            except FrontendError as exc:
                raise _located(self.location, exc) from None
            changes["checksum"] = _checked_checksum(self, checksum)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _checked_checksum(add: AddInstruction, checksum: str) -> str:
    try:
        parse_add_checksum(checksum)
    except BadValue as exc:
        raise add.error(f"ADD --checksum: {exc}") from None
    if len(add.sources) + len(add.contents) != 1:
        raise add.error("checksum can't be specified for multiple sources (ADD one URL at a time)")
    return checksum


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeInstruction(Instruction):
    """``VOLUME`` paths (expanded)."""

    volumes: tuple[str, ...] = ()

    def expand(self, expander: WordExpander) -> Self:
        try:
            volumes = tuple(expander.word(v) for v in self.volumes)
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        if any(v == "" for v in volumes):
            raise self.error("VOLUME specified can not be an empty string")
        return dataclasses.replace(self, volumes=volumes)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInstruction(Instruction):
    """``USER user[:group]`` (expanded)."""

    user: str = ""

    def expand(self, expander: WordExpander) -> Self:
        try:
            return dataclasses.replace(self, user=expander.word(self.user))
        except FrontendError as exc:
            raise _located(self.location, exc) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkdirInstruction(Instruction):
    """``WORKDIR path`` (expanded; relative paths are relative to the previous one)."""

    path: str = ""

    def expand(self, expander: WordExpander) -> Self:
        try:
            return dataclasses.replace(self, path=expander.word(self.path))
        except FrontendError as exc:
            raise _located(self.location, exc) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgInstruction(Instruction):
    """``ARG name[=default] ...``. Not expanded by :meth:`expand`: defaults are
    expanded when the argument is defined, and only if no build argument overrides
    them (the converter's job). ``prev_comment`` is the comment line right above the
    instruction (``""``: none)."""

    args: tuple[ArgDef, ...] = ()
    prev_comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OnbuildInstruction(Instruction):
    """``ONBUILD trigger``. ``expression`` is the trigger's source (heredocs included),
    stored in the image; ``trigger`` is its parsed node (already checked)."""

    expression: str = ""
    trigger: Node | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopsignalInstruction(Instruction):
    """``STOPSIGNAL`` (expanded, then checked to be a signal name or number)."""

    signal: str = ""

    def expand(self, expander: WordExpander) -> Self:
        try:
            signal = expander.word(self.signal)
        except FrontendError as exc:
            raise _located(self.location, exc) from None
        try:
            parse_signal(signal)
        except BadValue as exc:
            raise self.error(f"STOPSIGNAL: {exc}") from None
        return dataclasses.replace(self, signal=signal)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthcheckInstruction(Instruction):
    """``HEALTHCHECK NONE`` (``test == ("NONE",)``) or ``HEALTHCHECK [opts] CMD ...``
    (``test`` is ``("CMD", args...)`` for the exec form, ``("CMD-SHELL", cmd)`` for the
    shell form, as in the image config). Durations are nanoseconds, 0 when not set."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ShellInstruction(Instruction):
    """``SHELL ["executable", "params"...]``."""

    shell: tuple[str, ...] = ()
