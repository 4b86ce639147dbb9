"""JSON from elsewhere nested past the decoder's stack is a ``ValueError`` (and so the
error of whatever parses it), never a ``RecursionError`` traceback."""

from __future__ import annotations

import pytest

from dockyard.core import ContentError, FrontendError, InvalidDefinitionError
from dockyard.core.jsontext import loads
from dockyard.dockerfile import parse_dockerfile
from dockyard.oci import parse_manifest
from dockyard.oci._config import ImageConfig

DEEP_LIST = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def test_loads() -> None:
    assert loads(b'{"a": [1]}') == {"a": [1]}
    for data in (DEEP_LIST, DEEP_OBJECT, DEEP_LIST.decode()):
        with pytest.raises(ValueError, match="nested too deeply"):
            loads(data)
    with pytest.raises(ValueError):
        loads(b"\xff")


@pytest.mark.parametrize("data", [DEEP_LIST, DEEP_OBJECT])
def test_registry_documents(data: bytes) -> None:
    # a manifest, index or config from a registry
    with pytest.raises(ContentError, match="invalid image manifest: not valid JSON"):
        parse_manifest(data)
    with pytest.raises(ContentError, match="invalid image config: not valid JSON"):
        ImageConfig.parse(data)


def test_a_dockerfile_of_brackets_is_a_dockerfile_error() -> None:
    # the syntax directive is also looked for in a JSON object at the top
    with pytest.raises(FrontendError, match=r"^Dockerfile:1: "):
        parse_dockerfile(DEEP_LIST.decode())


def test_local_source_patterns_from_a_client() -> None:
    from dockyard.source._local import _json_list

    with pytest.raises(InvalidDefinitionError, match="not a JSON list of strings"):
        _json_list("local.includepattern", DEEP_LIST.decode()[:5000])
