"""Secrets: read when asked, never shown; the same through every transport."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dockyard.core import CollectingReporter, NotFoundError, UsageError
from dockyard.session import Secrets, SecretSource, Session

from .harness import Harness

VALUE = b"s3cr3t-\x00-value-\xff"


def test_parse_secret_specs(tmp_path: Path) -> None:
    env = {"TOKEN": "x"}
    assert SecretSource.parse("id=a,src=/run/a", environ=env) == SecretSource(
        id="a", path=Path("/run/a")
    )
    assert SecretSource.parse("id=a,source=f", environ=env).path == Path("f")
    assert SecretSource.parse("id=a,env=TOKEN", environ=env) == SecretSource(id="a", env="TOKEN")
    assert SecretSource.parse("type=env,id=a,src=TOKEN", environ=env).env == "TOKEN"
    # neither src nor env: the variable named like the id if set, else a file
    assert SecretSource.parse("id=TOKEN", environ=env).env == "TOKEN"
    assert SecretSource.parse("id=other", environ=env).path == Path("other")
    for bad in ("src=x", "id=a,src=x,env=Y", "id=a,type=dir", "id=a,what=x", "id"):
        with pytest.raises(UsageError):
            SecretSource.parse(bad, environ=env)
    with pytest.raises(UsageError, match="twice"):
        Secrets([SecretSource(id="a", env="X"), SecretSource(id="a", env="Y")])


async def test_values_are_read_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"one")
    monkeypatch.setenv("DY_TEST_SECRET", "from-env")
    store = Secrets([SecretSource(id="f", path=path), SecretSource(id="e", env="DY_TEST_SECRET")])
    assert await store.get("f") == b"one"
    path.write_bytes(b"two")
    assert await store.get("f") == b"two"
    assert await store.get("e") == b"from-env"
    path.unlink()
    with pytest.raises(NotFoundError, match=r"secret 'f'.*does not exist"):
        await store.get("f")
    monkeypatch.delenv("DY_TEST_SECRET")
    with pytest.raises(NotFoundError, match="DY_TEST_SECRET"):
        await store.get("e")
    with pytest.raises(NotFoundError, match="secret 'nope' not found"):
        await store.get("nope")


async def test_secrets_through_the_session(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "token"
    path.write_bytes(VALUE)
    store = Secrets([SecretSource(id="token", path=path)], values={"inline": VALUE})
    session = Session(secrets=store)
    reporter = CollectingReporter()
    async with harness.open(session) as handle:
        assert await handle.secrets.get("token") == VALUE
        assert await handle.secrets.get("inline") == VALUE
        with pytest.raises(NotFoundError, match="secret 'missing' not found") as info:
            await handle.secrets.get("missing")
        shown = [repr(store), repr(session), repr(handle), repr(handle.secrets), str(info.value)]
    text = VALUE.decode("latin-1")
    for item in [*shown, caplog.text, repr(reporter.events)]:
        assert text not in item
        assert "s3cr3t" not in item


async def test_a_session_without_secrets(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        with pytest.raises(NotFoundError, match="forwards no secrets"):
            await handle.secrets.get("x")


def test_store_repr_lists_ids_only() -> None:
    store = Secrets(values={"a": b"x"})
    assert "x" not in repr(store)
    assert repr(store) == "Secrets(ids=['a'])"
