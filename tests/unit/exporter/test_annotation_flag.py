"""``--annotation`` values read as buildx reads them: ``[TYPES:]KEY=VALUE`` with a comma
list of types, each optionally limited to one platform."""

from __future__ import annotations

import pytest

from dockyard.core import Platform, UsageError
from dockyard.exporter import Annotation, AnnotationKind, parse_annotation

MANIFEST, INDEX = AnnotationKind.MANIFEST, AnnotationKind.INDEX


def test_a_plain_key_goes_on_the_manifests() -> None:
    assert parse_annotation("org.opencontainers.image.title=Demo app") == (
        Annotation(kind=MANIFEST, key="org.opencontainers.image.title", value="Demo app"),
    )


def test_the_value_keeps_its_own_equals_signs_and_may_be_empty() -> None:
    (a,) = parse_annotation("k=a=b")
    assert (a.key, a.value) == ("k", "a=b")
    (a,) = parse_annotation("k=")
    assert (a.key, a.value) == ("k", "")


def test_types_and_platforms() -> None:
    amd64 = Platform.parse("linux/amd64")
    assert parse_annotation("index,manifest:k=v") == (
        Annotation(kind=INDEX, key="k", value="v"),
        Annotation(kind=MANIFEST, key="k", value="v"),
    )
    assert parse_annotation("manifest[linux/amd64]:k=v") == (
        Annotation(kind=MANIFEST, key="k", value="v", platform=amd64),
    )
    kinds = [
        a.kind for a in parse_annotation("manifest-descriptor,index-descriptor,index,index:k=v")
    ]
    assert kinds == [
        AnnotationKind.MANIFEST_DESCRIPTOR,
        AnnotationKind.INDEX_DESCRIPTOR,
        INDEX,
    ]  # a type given twice counts once
    (a,) = parse_annotation("manifest:a:b=c")  # the first colon ends the types
    assert a.key == "a:b"


def test_the_attribute_form_is_what_an_output_would_carry() -> None:
    (a,) = parse_annotation("manifest[linux/arm64]:k=v")
    assert a.attr() == ("annotation[linux/arm64].k", "v")
    (a,) = parse_annotation("index:k=v")
    assert a.attr() == ("annotation-index.k", "v")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("novalue", "expected \\[TYPE:\\]KEY=VALUE"),
        ("=v", "expected \\[TYPE:\\]KEY=VALUE"),
        ("index:=v", "the key is empty"),
        ("layer:k=v", "unknown type 'layer'"),
        (":k=v", "invalid type ''"),
        ("manifest[]:k=v", "--annotation 'manifest\\[\\]:k=v'"),
        ("manifest[linux/amd64:k=v", "invalid type"),
    ],
)
def test_bad_values_name_the_flag(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_annotation(value)
    assert "--annotation" in str(info.value)
