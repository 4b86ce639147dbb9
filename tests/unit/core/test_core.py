from __future__ import annotations

import asyncio

import pytest

from dockyard.core import (
    CollectingReporter,
    Digest,
    DockyardError,
    ExecError,
    FrontendError,
    Platform,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexLog,
    VertexRef,
    error_from_record,
    normalize_platforms,
)
from dockyard.core.singleflight import SingleFlight


def test_digest_parse_and_compute() -> None:
    d = Digest.from_bytes(b"hello")
    assert d == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert d.algorithm == "sha256"
    assert d.short() == "2cf24dba5fb0"
    assert Digest.parse(str(d)) == d
    for bad in ["", "sha256:", "sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "abc"]:
        with pytest.raises(ValueError, match="invalid digest"):
            Digest.parse(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("arm64", "linux/arm64"),
        ("Linux/AMD64", "linux/amd64"),
    ],
)
def test_platform_normalization(text: str, expected: str) -> None:
    assert str(Platform.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "linux//amd64", "a/b/c/d", "/amd64"])
def test_platform_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="platform"):
        Platform.parse(text)


def test_platform_matching_ignores_missing_variant() -> None:
    assert Platform.parse("linux/arm/v7").matches(Platform.of("linux", "arm", "v7"))
    assert not Platform.parse("linux/arm/v7").matches(Platform.parse("linux/arm/v6"))
    assert not Platform.parse("linux/amd64").matches(Platform.parse("linux/arm64"))


def test_normalize_platforms_dedupes_and_folds_a_single_one_into_platform() -> None:
    amd64, arm64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
    assert normalize_platforms(None, [amd64, arm64, amd64]) == (None, (amd64, arm64))
    assert normalize_platforms(None, [arm64, arm64]) == (arm64, ())
    assert normalize_platforms(arm64, [arm64]) == (arm64, ())
    assert normalize_platforms(amd64, []) == (amd64, ())
    with pytest.raises(UsageError, match="platform or platforms, not both"):
        normalize_platforms(amd64, [arm64])
    with pytest.raises(UsageError, match="platform or platforms, not both"):
        normalize_platforms(amd64, [amd64, arm64])


def test_error_message_names_location_and_round_trips() -> None:
    loc = SourceLocation(filename="Dockerfile", ranges=(SourceRange(7, 7),))
    err = FrontendError('COPY failed: "app.py" not found in build context', locations=(loc,))
    assert str(err) == 'Dockerfile:7: COPY failed: "app.py" not found in build context'
    err.with_vertex(VertexRef(digest="sha256:" + "0" * 64, name="[2/3] COPY app.py ."))
    back = error_from_record(err.to_record())
    assert type(back) is FrontendError
    assert str(back) == str(err)
    assert back.vertex == err.vertex


def test_an_error_class_the_reader_does_not_know_comes_back_as_its_nearest_base() -> None:
    class PluginRefusal(UsageError):  # defined where the reader never imports
        pass

    record = PluginRefusal("needs an entitlement").to_record()
    assert record["bases"] == ["UsageError"]
    record["type"] = "NotImportedHere"  # as a client that never loaded the class sees it
    back = error_from_record(record)
    assert type(back) is UsageError
    assert back.exit_code == 2  # a usage error, as the daemon meant it
    assert str(back) == "needs an entitlement"
    assert type(error_from_record({"type": "Unknown", "message": "m"})) is DockyardError


def test_exec_error_round_trips_context() -> None:
    err = ExecError(
        "process exited with 3", args=("sh", "-c", "exit 3"), exit_status=3, log_tail=("boom",)
    )
    back = error_from_record(err.to_record())
    assert isinstance(back, ExecError)
    assert (back.process_args, back.exit_status, back.log_tail) == (
        ("sh", "-c", "exit 3"),
        3,
        ("boom",),
    )


def test_exit_codes() -> None:
    assert UsageError("x").exit_code == 2
    assert DockyardError("x").exit_code == 1


def test_unknown_record_type_becomes_base_error() -> None:
    err = error_from_record({"type": "SomethingNew", "message": "m"})
    assert type(err) is DockyardError
    assert str(err) == "m"


def test_collecting_reporter_filters_logs() -> None:
    r = CollectingReporter()
    r.emit(VertexLog(digest="a", stream=1, data=b"x", timestamp=0))
    r.emit(VertexLog(digest="b", stream=1, data=b"y", timestamp=0))
    assert r.logs("a") == b"x"
    assert r.logs() == b"xy"


async def test_singleflight_shares_one_computation() -> None:
    sf: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    tasks = [asyncio.create_task(sf.do("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    assert sf.in_flight("k")
    gate.set()
    assert await asyncio.gather(*tasks) == [42] * 5
    assert calls == 1
    assert not sf.in_flight("k")


async def test_singleflight_cancels_work_when_last_waiter_leaves() -> None:
    sf: SingleFlight[str, int] = SingleFlight()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    a = asyncio.create_task(sf.do("k", work))
    b = asyncio.create_task(sf.do("k", work))
    await started.wait()
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    assert not cancelled.is_set(), "one waiter remains: the work must go on"
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    assert cancelled.is_set()
    assert not sf.in_flight("k")


async def test_singleflight_propagates_errors_to_every_waiter() -> None:
    sf: SingleFlight[str, int] = SingleFlight()

    async def work() -> int:
        await asyncio.sleep(0)
        raise ValueError("nope")

    results = await asyncio.gather(sf.do("k", work), sf.do("k", work), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)


def test_the_error_reported_out_of_a_task_group() -> None:
    import asyncio

    from dockyard.core import NotFoundError, first_error

    cancelled = asyncio.CancelledError()
    other = ValueError("boom")
    ours = NotFoundError("blob sha256:x not found")
    nested = BaseExceptionGroup("g", [cancelled, BaseExceptionGroup("inner", [other, ours])])
    assert first_error(nested) is ours  # a Dockyard error, however deep
    assert (
        first_error(BaseExceptionGroup("g", [cancelled, other])) is other
    )  # not a sibling's cancellation
    assert first_error(BaseExceptionGroup("g", [cancelled])) is cancelled
