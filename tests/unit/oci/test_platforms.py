from __future__ import annotations

import pytest

from dockyard.core import Digest, NotFoundError, Platform
from dockyard.oci import Descriptor, ImageIndex, MediaType, platform_candidates, select_platform


def entry(n: int, platform: str | None, **annotations: str) -> Descriptor:
    parsed = None
    if platform is not None:
        parts = platform.split("/")
        parsed = Platform(
            os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) > 2 else ""
        )
    return Descriptor(
        media_type=MediaType.OCI_MANIFEST,
        digest=Digest.from_hex(f"{n:064x}"),
        size=100 + n,
        platform=parsed,
        annotations=annotations,
    )


def index(*entries: Descriptor) -> ImageIndex:
    return ImageIndex(manifests=entries)


def chosen(idx: ImageIndex, wanted: str, *, strict: bool = False) -> int:
    return int(select_platform(idx, Platform.parse(wanted), strict=strict).digest.hex, 16)


MULTI = index(
    entry(1, "linux/amd64"),
    entry(2, "linux/arm/v6"),
    entry(3, "linux/arm/v7"),
    entry(4, "linux/arm64/v8"),
    entry(5, "linux/386"),
    entry(6, "unknown/unknown", **{"vnd.docker.reference.type": "attestation-manifest"}),
    entry(7, "windows/amd64"),
)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("linux/amd64", 1),
        ("linux/x86_64", 1),
        ("linux/arm64", 4),  # an entry written arm64/v8 is arm64
        ("linux/aarch64", 4),
        ("linux/arm64/v8", 4),
        ("linux/arm", 3),  # arm means arm/v7
        ("linux/arm/v7", 3),
        ("linux/armhf", 3),
        ("linux/arm/v6", 2),
        ("linux/386", 5),
        ("windows/amd64", 7),
    ],
)
def test_exact_matches(wanted: str, expected: int) -> None:
    assert chosen(MULTI, wanted) == expected


def test_fallbacks_like_containerd() -> None:
    only_v6 = index(entry(2, "linux/arm/v6"), entry(5, "linux/386"))
    assert chosen(only_v6, "linux/arm/v7") == 2
    assert chosen(only_v6, "linux/amd64") == 5  # amd64 runs 386
    assert chosen(index(entry(3, "linux/arm/v7")), "linux/arm64") == 3  # arm64 runs arm32
    v2 = index(entry(1, "linux/amd64"), entry(8, "linux/amd64/v2"))
    assert chosen(v2, "linux/amd64/v3") == 8  # best lower level first
    assert chosen(v2, "linux/amd64") == 1
    with pytest.raises(NotFoundError):
        chosen(only_v6, "linux/arm/v7", strict=True)


def test_arm_v5_does_not_run_v6() -> None:
    with pytest.raises(NotFoundError, match="no image for platform linux/arm/v5"):
        chosen(index(entry(2, "linux/arm/v6")), "linux/arm/v5")


def test_first_of_equal_entries_wins() -> None:
    assert chosen(index(entry(9, "linux/amd64"), entry(1, "linux/amd64")), "linux/amd64") == 9


def test_attestations_are_never_chosen() -> None:
    idx = index(entry(6, "unknown/unknown"), entry(2, "linux/arm/v6"))
    with pytest.raises(NotFoundError) as info:
        chosen(idx, "linux/amd64")
    assert "available: linux/arm/v6" in str(info.value)
    assert "unknown" not in str(info.value)


def test_single_untagged_entry_is_taken() -> None:
    assert chosen(index(entry(1, None)), "linux/s390x") == 1
    with pytest.raises(NotFoundError, match=r"in busybox \(available: none\)"):
        select_platform(
            index(entry(1, None), entry(2, None)), Platform.parse("linux/amd64"), name="busybox"
        )


def test_candidates() -> None:
    assert [str(p) for p in platform_candidates(Platform.parse("linux/arm/v7"))] == [
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert [str(p) for p in platform_candidates(Platform.parse("linux/arm64"))] == [
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert platform_candidates(Platform.parse("linux/s390x")) == (Platform.parse("linux/s390x"),)
