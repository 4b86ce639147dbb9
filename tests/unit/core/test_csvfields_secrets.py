"""Errors about a comma-separated flag value never show a secret it holds: values of
secret-looking keys (``password=``, ``secret_access_key=``, ``token=`` ...), the parts
of one an unquoted comma split off, and the password of a URL."""

from __future__ import annotations

import pytest

from dockyard.core import UsageError
from dockyard.core.csvfields import csv_fields, key_values, redact
from dockyard.exporter import parse_output


def test_a_broken_record_hides_its_secrets() -> None:
    text = "type=s3,secret_access_key=S3CRETvalue\nmore,bucket=b"
    with pytest.raises(UsageError) as info:
        csv_fields(text, "--cache-to")
    assert "invalid value" in info.value.message
    assert "S3CRET" not in info.value.message
    assert "more" not in info.value.message
    assert "bucket=b" in info.value.message or "type=s3" in info.value.message


def test_a_field_split_off_a_secret_is_not_shown() -> None:
    what = "--output type=registry,password=hunter2,part2"
    with pytest.raises(UsageError) as info:
        key_values(["type=registry", "password=hunter2", "part2"], what)
    message = info.value.message
    assert "hunter2" not in message, message
    assert "part2" not in message, message
    assert "quote" in message  # says how to give a value with a comma


def test_a_repeated_key_error_hides_secrets_in_the_flag_value() -> None:
    what = "--cache-to type=x,token=tok3n,dest=a,dest=b"
    with pytest.raises(UsageError) as info:
        key_values(["type=x", "token=tok3n", "dest=a", "dest=b"], what)
    assert "tok3n" not in info.value.message
    assert "dest given twice" in info.value.message


@pytest.mark.parametrize(
    "spec",
    [
        "type=local,dest=out,password=pa55word,bad",
        "type=local,dest=https://user:pa55word@example.com/x,dest=y",
        "password=pa55word,name=x",  # no type=
        'type=image,"registry.password=pa55word,rest",nope',
    ],
)
def test_output_errors_hide_secrets(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_output(spec)
    assert "pa55word" not in info.value.message, info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type=s3,secret_access_key=abc,region=x", "type=s3,secret_access_key=***,region=x"),
        ('a,"password=x,y",b=1', 'a,"password=***",b=1'),
        ("endpoint=https://u:p4ss@h/x", "endpoint=https://u:***@h/x"),
        ("type=local,dest=out", "type=local,dest=out"),
        ("Token=abc", "Token=***"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text, text) == expected
