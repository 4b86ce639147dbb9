"""Cache-key arithmetic and reference-counted result handles."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from dockyard.solver import ResultRef
from dockyard.solver._keys import content_key, def_key
from dockyard.testing.solver import FakeBackend

text = st.text(max_size=8)
inputs = st.lists(st.tuples(text, st.none() | text, st.integers(0, 3)), max_size=3)


def test_keys_are_stable_and_follow_the_documented_encoding() -> None:
    # Keys are persisted: changing how they are built must be a deliberate version bump.
    definition = def_key("sha256:op", [("sha256:in", "/src", 0)])
    assert definition == ("sha256:3b3bd48706636c0209a97e4950586a2dde721d5324ef53472706d95ada2f88dd")
    payload = ["dockyard.solver/1", "def", "sha256:op", [["sha256:in", "/src", 0]]]
    encoded = json.dumps(payload, separators=(",", ":")).encode()
    assert definition == "sha256:" + hashlib.sha256(encoded).hexdigest()
    content = content_key("sha256:op", [("content", "sha256:c"), ("key", "sha256:in", None, 1)])
    assert content == ("sha256:193300500e7c83a0b9a5032d0bc7705335a7376fcfedd884fe2ad6a743c5ad79")


@given(st.tuples(text, inputs), st.tuples(text, inputs))
def test_distinct_definitions_give_distinct_keys(
    one: tuple[str, list[tuple[str, str | None, int]]],
    two: tuple[str, list[tuple[str, str | None, int]]],
) -> None:
    assert (def_key(*one) == def_key(*two)) == (one == two)


@given(text, inputs)
def test_content_and_definition_keys_never_collide(
    digest: str, parts: list[tuple[str, str | None, int]]
) -> None:
    as_content = [("key", key, sel, idx) for key, sel, idx in parts]
    assert def_key(digest, parts) != content_key(digest, as_content)


def test_a_selector_is_not_confused_with_a_separator() -> None:
    assert def_key("d", [("a", "b", 0)]) != def_key("d", [("a,b", None, 0)])
    assert def_key("d", [("a", None, 0)]) != def_key("d", [("a", "", 0)])


async def test_result_refs_count_references() -> None:
    backend = FakeBackend()
    result = backend.new_result("v")
    ref = ResultRef.adopt(result, cache_key="k")
    clone = ref.clone()
    assert clone.id == ref.id == result.id
    await ref.release()
    await ref.release()  # a handle releases once
    assert backend.released == []
    await clone.release()
    assert backend.released == [result.id]
    backend.assert_no_leaks()
