"""The Python frontend: a build described by a Python file.

A build file is plain Python that imports :mod:`dockyard.llb` and defines ``build``,
which returns the :class:`~dockyard.llb.State` to build::

    from dockyard import llb

    def build(ctx):
        version = ctx.build_args.get("VERSION", "1.0")
        return llb.image("busybox").run(f"echo {version} > /version").root

``build`` takes either no argument or one, a :class:`BuildContext` with the build
arguments (``--build-arg``) and the target platform. The file runs with ``__name__`` set
to ``"__dockyard_build__"`` and ``__file__`` to its path; it may import modules next to
it only if they are importable anyway (the file's directory is not added to
``sys.path``, so a build file cannot shadow modules by accident).

The file runs in this process with full Python powers: only load build files you trust.

Any error in the file — a syntax error, an exception while it runs or in ``build``, a
missing ``build`` or a wrong return type — is reported as a :class:`FrontendError` (or the
:class:`DockyardError` it raised) located at ``file:line`` of the build file.
"""

from __future__ import annotations

import inspect
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from dockyard import llb
from dockyard.core import (
    DockyardError,
    FrontendError,
    NotFoundError,
    Platform,
    SourceLocation,
    SourceRange,
    host_platform,
)

__all__ = ["BuildContext", "load_build_file"]

_MODULE_NAME = "__dockyard_build__"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildContext:
    """What a build file's ``build(ctx)`` receives."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: Platform = field(default_factory=host_platform)
    filename: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "build_args", MappingProxyType(dict(self.build_args)))

    def build_arg(self, name: str, default: str | None = None) -> str | None:
        """The build argument ``name``, or ``default``."""
        return self.build_args.get(name, default)


def load_build_file(
    path: str | Path,
    *,
    build_args: Mapping[str, str] | None = None,
    platform: Platform | None = None,
) -> llb.State:
    """Run the build file at ``path`` and return the state its ``build`` returns."""
    file = Path(path)
    filename = str(file)
    try:
        source = file.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"build file {filename} not found") from exc
    except OSError as exc:
        raise FrontendError(f"cannot read build file {filename}: {exc.strerror or exc}") from exc

    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno or 0
        raise FrontendError(
            f"syntax error: {exc.msg}", locations=(_location(filename, source, line),)
        ) from None
    except ValueError as exc:  # e.g. null bytes
        raise FrontendError(f"cannot compile build file {filename}: {exc}") from None

    module = types.ModuleType(_MODULE_NAME)
    module.__file__ = filename
    namespace = module.__dict__
    _run(lambda: exec(code, namespace), filename, source, "while loading the build file")

    build = namespace.get("build")
    if not callable(build):
        raise FrontendError(
            "the build file must define a function build() that returns an llb.State",
            locations=(_location(filename, source, 0),),
        )
    ctx = BuildContext(
        build_args=build_args or {}, platform=platform or host_platform(), filename=filename
    )
    takes_ctx = _takes_context(build, filename, source)
    result = _run(
        (lambda: build(ctx)) if takes_ctx else (lambda: build()),
        filename,
        source,
        "in build()",
    )
    if not isinstance(result, llb.State):
        raise FrontendError(
            f"build() must return an llb.State, not {type(result).__name__}",
            locations=(_location(filename, source, _def_line(build)),),
        )
    return result


def _takes_context(build: object, filename: str, source: bytes) -> bool:
    try:
        params = list(inspect.signature(build).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 1:
        raise FrontendError(
            "build() takes at most one argument (the build context)",
            locations=(_location(filename, source, _def_line(build)),),
        )
    return bool(params) and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )


def _def_line(function: object) -> int:
    code = getattr(function, "__code__", None)
    return int(getattr(code, "co_firstlineno", 0))


def _run(call: object, filename: str, source: bytes, when: str) -> object:
    assert callable(call)
    try:
        return call()
    except DockyardError as exc:
        line = _error_line(exc, filename)
        raise exc.with_locations((_location(filename, source, line),)) from None
    except SystemExit as exc:
        line = _error_line(exc, filename)
        raise FrontendError(
            f"the build file exited ({when}, status {exc.code})",
            locations=(_location(filename, source, line),),
        ) from None
    except Exception as exc:
        line = _error_line(exc, filename)
        message = (
            f"{type(exc).__name__} {when}: {exc}" if str(exc) else f"{type(exc).__name__} {when}"
        )
        raise FrontendError(message, locations=(_location(filename, source, line),)) from exc


def _error_line(exc: BaseException, filename: str) -> int:
    """The line of the innermost traceback frame inside the build file."""
    line = 0
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename and frame.lineno is not None:
            line = frame.lineno
    return line


def _location(filename: str, source: bytes, line: int) -> SourceLocation:
    ranges = (SourceRange(line, line),) if line > 0 else ()
    return SourceLocation(filename=filename, ranges=ranges, data=source)
