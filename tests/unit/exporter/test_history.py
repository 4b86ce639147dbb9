from __future__ import annotations

import pytest

from dockyard.core import ContentError, Digest, Platform
from dockyard.exporter import default_config, normalize_history, patch_config
from dockyard.exporter._image import LayerMeta, parse_timestamp
from dockyard.oci import History, ImageConfig, format_timestamp

T = "2024-01-01T00:00:00Z"


def _layers(*empty: bool) -> list[LayerMeta]:
    return [
        LayerMeta(empty=e, created=f"2024-01-0{i + 2}T00:00:00Z", description=f"step {i}")
        for i, e in enumerate(empty)
    ]


def test_one_entry_per_layer_and_empty_layers_dropped() -> None:
    history = [
        History(created_by="FROM", created=T),
        History(created_by="ENV", empty_layer=True),
        History(created_by="RUN a"),
        History(created_by="RUN nothing"),
    ]
    entries, kept = normalize_history(history, _layers(False, False, True))
    assert kept == [0, 1]
    assert [h.empty_layer for h in entries] == [False, True, False, True]
    assert entries[0].created == T
    assert entries[2].created == "2024-01-03T00:00:00Z"  # the layer record's time
    assert entries[3].created == "2024-01-04T00:00:00Z"
    assert entries[1].created == "2024-01-03T00:00:00Z"  # the gap takes the next time


def test_missing_entries_are_added_for_extra_layers() -> None:
    entries, kept = normalize_history(
        [History(created_by="FROM", created=T)], _layers(False, False)
    )
    assert kept == [0, 1]
    assert len(entries) == 2
    assert entries[1] == History(
        created="2024-01-03T00:00:00Z",
        created_by="step 1",
        comment="buildkit.exporter.image.v0",
    )


def test_entries_beyond_the_layers_become_empty() -> None:
    history = [History(created_by=f"RUN {i}", created=T) for i in range(3)]
    entries, kept = normalize_history(history, _layers(False))
    assert kept == [0]
    assert [h.empty_layer for h in entries] == [False, True, True]


def test_no_layers_no_history() -> None:
    entries, kept = normalize_history([], [])
    assert entries == []
    assert kept == []


def test_extra_empty_layer_gets_no_layer() -> None:
    entries, kept = normalize_history([], _layers(True, False))
    assert kept == [1]
    assert [h.empty_layer for h in entries] == [True, False]


def test_patch_config_with_epoch() -> None:
    epoch = 1_704_067_200  # 2024-01-01
    config = ImageConfig(architecture="amd64", os="linux", created="2030-01-01T00:00:00Z")
    history = [
        History(created="2023-06-01T00:00:00Z", created_by="old"),
        History(created="2025-06-01T00:00:00.123456789Z", created_by="new"),
        History(created_by="none", empty_layer=True),
    ]
    d = Digest.from_bytes(b"x")
    out = patch_config(config, [d], history, epoch)
    assert out.diff_ids == (d,)
    assert [h.created for h in out.history] == ["2023-06-01T00:00:00Z", T, T]
    assert out.created == T
    later = patch_config(
        ImageConfig(architecture="amd64", os="linux", created="2000-01-01T00:00:00Z"),
        [],
        history,
        epoch,
    )
    assert later.created == "2000-01-01T00:00:00Z"


def test_patch_config_created_from_last_history_entry() -> None:
    config = ImageConfig(architecture="amd64", os="linux")
    history = [History(created="2023-06-01T00:00:00Z"), History(created="2023-07-01T00:00:00Z")]
    assert patch_config(config, [], history, None).created == "2023-07-01T00:00:00Z"
    assert patch_config(config, [], [], None).created is None


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2024-01-01T00:00:00Z", 1_704_067_200 * 10**9),
        ("2024-01-01T00:00:00.5Z", 1_704_067_200 * 10**9 + 500_000_000),
        ("2024-01-01T01:00:00+01:00", 1_704_067_200 * 10**9),
        ("2023-12-31T23:00:00.000000001-01:00", 1_704_067_200 * 10**9 + 1),
    ],
)
def test_parse_timestamp(text: str, ns: int) -> None:
    assert parse_timestamp(text) == ns
    assert parse_timestamp(format_timestamp(ns)) == ns


def test_parse_timestamp_rejects_garbage() -> None:
    with pytest.raises(ContentError):
        parse_timestamp("yesterday")


def test_default_config() -> None:
    config = default_config(Platform.parse("linux/arm64"))
    assert config.architecture == "arm64"
    assert config.config.working_dir == "/"
    assert config.config.env_value("PATH")
