"""A vertex shared by the builds of several clients takes a secret or an SSH agent from
the first client that has it; a client that fails to answer (gone, silent past the call
timeout, a wrong or junk reply — a hostile client) is passed over, as BuildKit's
``session.Any`` passes over a session whose call fails, so it cannot fail the other
clients' builds (H77, security audit 2). Its error is raised only when no other client
has the secret."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import NotFoundError, SessionError
from dockyard.llbsolver import _exec
from dockyard.llbsolver.types import SECRETS, SSH_AGENTS


class _Ctx:
    def __init__(self, **values: list[Any]) -> None:
        self._values = values

    def values(self, key: Any) -> list[Any]:
        return self._values.get(key.name, [])


class _Store:
    def __init__(self, answer: bytes | Exception) -> None:
        self.answer = answer
        self.asked = 0

    async def get(self, id: str) -> bytes:
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _ctx(*stores: _Store) -> Any:
    return _Ctx(**{SECRETS.name: list(stores)})


async def test_a_failing_client_is_passed_over() -> None:
    hostile = _Store(SessionError("session s1: the client answered a secret request wrongly"))
    good = _Store(b"s3cr3t")
    assert await _exec._secret(_ctx(hostile, good), "token") == b"s3cr3t"
    assert (hostile.asked, good.asked) == (1, 1)


async def test_the_failure_is_raised_when_nobody_has_the_secret() -> None:
    failure = SessionError("session s1: the client did not answer within 60s")
    with pytest.raises(SessionError, match="did not answer"):
        await _exec._secret(_ctx(_Store(failure), _Store(NotFoundError("no"))), "token")
    with pytest.raises(SessionError, match="did not answer"):
        await _exec._secret(_ctx(_Store(NotFoundError("no")), _Store(failure)), "token")
    assert await _exec._secret(_ctx(_Store(NotFoundError("no"))), "token") is None


class _Agents:
    def __init__(self, answer: Path | Exception) -> None:
        self.answer = answer

    @contextlib.asynccontextmanager
    async def forward(self, id: str, **kwargs: Any) -> AsyncIterator[Path]:
        if isinstance(self.answer, Exception):
            raise self.answer
        yield self.answer


async def test_an_ssh_agent_of_a_failing_client_is_passed_over(tmp_path: Path) -> None:
    mount = _exec._Mount(dest="/run/buildkit/ssh_agent.0", kind=2, secret_id="default")
    ctx: Any = _Ctx(
        **{
            SSH_AGENTS.name: [
                _Agents(SessionError("session s1 ended: the client disconnected")),
                _Agents(tmp_path / "agent.sock"),
            ]
        }
    )
    async with contextlib.AsyncExitStack() as stack:
        assert await _exec._ssh_socket(ctx, stack, mount) == tmp_path / "agent.sock"


async def test_git_and_http_credentials_pass_over_a_failing_client(tmp_path: Path) -> None:
    from dockyard.source import GitSpec, HttpSource, HttpSpec
    from dockyard.source._git import _auth_header, _forward_agent

    failing = _Store(SessionError("session s1: the client answered a secret request wrongly"))
    spec = GitSpec.create("https://git.example.com/r.git", auth_token_secret="GIT_AUTH_TOKEN")
    found = await _auth_header(spec, [failing, _Store(b"tok")])
    assert found is not None
    assert found[0].startswith("Authorization: basic ")
    with pytest.raises(SessionError, match="wrongly"):
        await _auth_header(spec, [failing, _Store(NotFoundError("no"))])

    ssh = GitSpec.create("git@git.example.com:r.git")
    agents: list[Any] = [_Agents(SessionError("gone")), _Agents(tmp_path / "agent.sock")]
    async with contextlib.AsyncExitStack() as stack:
        assert await _forward_agent(stack, ssh, agents) == tmp_path / "agent.sock"

    http = HttpSpec.create("https://example.com/f", auth_header_secret="H")
    source: Any = HttpSource.__new__(HttpSource)
    assert await source._auth(http, [failing, _Store(b"Bearer x")]) == "Bearer x"
    with pytest.raises(SessionError, match="wrongly"):
        await source._auth(http, [failing])
