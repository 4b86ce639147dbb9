"""Tokens that go into an ``Authorization`` header come from outside: a client's
credentials answer through its session (a daemon pulling for it), the user's docker
config (``registrytoken``), a token server. One holding a character HTTP headers cannot
carry is an AuthError naming the registry and the token, not httpx's UnicodeEncodeError
(H77's fuzzing of the credentials answer)."""

from __future__ import annotations

import httpx
import pytest

from dockyard.core import AuthError, Platform
from dockyard.registry import Credentials, StaticCredentials

from .fake import FakeRegistry
from .test_client import HOST, client, with_image


@pytest.mark.parametrize("token", ["t\u20ac", "a\r\nX-Injected: 1", "\x00", "\u00e9"])
async def test_a_registry_token_no_header_can_carry_is_an_auth_error(token: str) -> None:
    fake = FakeRegistry(auth="bearer")
    with_image(fake)
    creds = StaticCredentials({HOST: Credentials(registry_token=token)})
    async with client(fake, credentials=creds) as c:
        with pytest.raises(AuthError, match=f"registry {HOST} failed: the registry token holds"):
            await c.resolve(f"{HOST}/app", platform=Platform.parse("linux/amd64"))
    assert not any("authorization" in r.headers for r in fake.requests if r.url.host == HOST)


async def test_a_token_servers_token_no_header_can_carry_is_an_auth_error() -> None:
    fake = FakeRegistry(auth="bearer")
    with_image(fake)
    handle = fake.handle

    def odd_token(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            return httpx.Response(200, json={"token": "tok\u2603"})
        return handle(request)

    fake.handle = odd_token  # type: ignore[method-assign]
    async with client(fake) as c:
        with pytest.raises(AuthError, match="the token server's token holds"):
            await c.resolve(f"{HOST}/app", platform=Platform.parse("linux/amd64"))


async def test_usual_tokens_still_pass() -> None:
    fake = FakeRegistry(auth="bearer")
    with_image(fake)
    async with client(fake) as c:
        await c.resolve(f"{HOST}/app", platform=Platform.parse("linux/amd64"))
