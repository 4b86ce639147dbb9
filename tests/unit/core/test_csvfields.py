from __future__ import annotations

import pytest

from dockyard.core import UsageError
from dockyard.core.csvfields import csv_fields, csv_record, key_values


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("type=local,dest=out", ["type=local", "dest=out"]),
        (" type=local , dest=out ,", ["type=local", "dest=out"]),  # blanks, empty fields
        ('type=image,"name=a,b"', ["type=image", "name=a,b"]),  # a quoted comma
        ("", []),
    ],
)
def test_fields_are_split_as_a_csv_record(text: str, fields: list[str]) -> None:
    assert csv_fields(text, "--output") == fields


def test_a_broken_record_names_the_flag() -> None:
    with pytest.raises(UsageError, match="--attest: invalid value"):
        csv_fields("type=a\nb", "--attest")  # a new line outside quotes


def test_keys_are_case_insensitive_and_values_stripped() -> None:
    assert key_values(["Type= local", "DEST=out "], "--output") == {
        "type": "local",
        "dest": "out",
    }


def test_a_repeated_key_is_an_error_unless_joined() -> None:
    with pytest.raises(UsageError, match="--cache-to x: dest given twice"):
        key_values(["dest=a", "dest=b"], "--cache-to x")
    assert key_values(["name=a", "name=b"], "--output", joined=("name",)) == {"name": "a,b"}


def test_a_field_without_a_value_is_an_error() -> None:
    with pytest.raises(UsageError, match=r"invalid field 'push' \(expected key=value\)"):
        key_values(["type=image", "push"], "--output")


def test_a_record_reads_back_as_its_fields() -> None:
    fields = ["mode=max", "builder-id=https://ci.example/a,b", 'note=say "hi"']
    text = csv_record(fields)
    assert text.startswith("mode=max,")
    assert csv_fields(text, "attest:provenance") == fields
