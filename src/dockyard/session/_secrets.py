"""Client-side secrets: where they come from (:class:`SecretSource`) and the store that
reads them when the engine asks (:class:`Secrets`).

Values are read at the moment a build step asks for them, never cached, and never shown:
no ``repr``, error message or log line contains a secret's bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError, UsageError

__all__ = ["SecretSource", "Secrets"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSource:
    """Where the client reads the secret ``id``: the file ``path`` or the environment
    variable ``env`` (exactly one)."""

    id: str
    path: Path | None = None
    env: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise UsageError("a secret needs an id")
        if (self.path is None) == (self.env is None):
            raise UsageError(f"secret {self.id!r}: give exactly one of a file or an env variable")

    @classmethod
    def parse(cls, value: str, *, environ: Mapping[str, str] | None = None) -> SecretSource:
        """``--secret`` syntax: ``id=ID[,src=PATH|,env=VAR][,type=file|env]``.

        As in buildx and BuildKit: ``source`` is a synonym of ``src``; with ``type=env``
        ``src`` names the variable; with neither ``src`` nor ``env`` the variable named
        like the id is used if it is set, else a file named like the id.
        """
        environ = os.environ if environ is None else environ
        kind = "file"
        secret_id = src = env = ""
        for field in value.split(","):
            key, sep, val = field.partition("=")
            key = key.strip().lower()
            if not sep:
                raise UsageError(f"invalid secret {value!r}: expected key=value in {field!r}")
            if key == "type":
                if val not in ("file", "env"):
                    raise UsageError(f"invalid secret type {val!r} (expected file or env)")
                kind = val
            elif key == "id":
                secret_id = val
            elif key in ("src", "source"):
                src = val
            elif key == "env":
                env = val
            else:
                raise UsageError(f"invalid secret {value!r}: unexpected key {key!r}")
        if not secret_id:
            raise UsageError(f"invalid secret {value!r}: id is required")
        if kind == "env" and not env:
            env, src = src, ""
        if src and env:
            raise UsageError(f"invalid secret {value!r}: src and env are exclusive")
        if not src and not env:
            if secret_id in environ:
                env = secret_id
            else:
                src = secret_id
        if env:
            return cls(id=secret_id, env=env)
        return cls(id=secret_id, path=Path(src).expanduser())


class Secrets:
    """A :class:`~dockyard.session.types.SecretStore` over :class:`SecretSource` values
    (and literal ``values``, for API callers and tests). Reads happen in :meth:`get`;
    a source file that does not exist is a :class:`~dockyard.core.UsageError` here."""

    __slots__ = ("_sources", "_values")

    def __init__(
        self,
        sources: Iterable[SecretSource] = (),
        *,
        values: Mapping[str, bytes] | None = None,
    ) -> None:
        self._sources: dict[str, SecretSource] = {}
        for source in sources:
            if source.id in self._sources:
                raise UsageError(f"secret {source.id!r} is given twice")
            if source.path is not None:
                _check_file(source.id, source.path)
            self._sources[source.id] = source
        self._values = dict(values or {})
        for key in self._values:
            if key in self._sources:
                raise UsageError(f"secret {key!r} is given twice")

    def ids(self) -> frozenset[str]:
        return frozenset(self._sources) | frozenset(self._values)

    def __repr__(self) -> str:
        return f"Secrets(ids={sorted(self.ids())!r})"

    async def get(self, id: str) -> bytes:
        value = self._values.get(id)
        if value is not None:
            return value
        source = self._sources.get(id)
        if source is None:
            raise NotFoundError(f"secret {id!r} not found")
        if source.env is not None:
            env = os.environ.get(source.env)
            if env is None:
                raise NotFoundError(
                    f"secret {id!r}: environment variable {source.env!r} is not set"
                )
            return os.fsencode(env)
        assert source.path is not None
        return await asyncio.to_thread(_read_file, id, source.path)


def _check_file(id: str, path: Path) -> None:
    """A secret's file must exist when the build starts (buildx stats each ``src``, so a
    typo is a usage error, not a build that runs without it); it is read only when
    asked, and may change meanwhile."""
    try:
        os.stat(path)
    except OSError as exc:
        raise UsageError(
            f"--secret id={id}: cannot use {str(path)!r}: {exc.strerror or exc}"
        ) from exc


def _read_file(id: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"secret {id!r}: file {str(path)!r} does not exist") from exc
    except OSError as exc:
        raise DockyardError(f"secret {id!r}: cannot read {str(path)!r}: {exc.strerror}") from exc
