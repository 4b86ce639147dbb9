"""Credentials in URLs never reach a ``mode=max`` predicate: a proxy build argument
(recorded among the arguments and in each ``RUN`` step's proxy environment), an ``ADD``
URL with ``user:password@`` (the step's source identifier, the Dockerfile's copy)."""

from __future__ import annotations

import base64
import json

import pytest

from dockyard.core import Platform
from dockyard.exporter import ProvenanceOptions
from dockyard.llbsolver import capture_provenance, provenance_predicate, slsa1_predicate

DOCKERFILE = """\
FROM busybox
ADD https://bob:hunter2xyz@example.com/f.tgz /f
ADD https://tok3nvalue@github.com/org/repo.git#main /src
RUN echo hi
"""
SECRETS = ("hunter2xyz", "tok3nvalue", "proxypass99", ":pw@")
PROXIES = {"HTTP_PROXY": "http://u:proxypass99@proxy:3128", "FTP_PROXY": "http://x:pw@p"}


@pytest.mark.parametrize("version", ["v0.2", "v1"])
async def test_url_credentials_are_masked_in_args_steps_and_source(version: str) -> None:
    from dockyard.dockerfile import ConvertOptions, convert, parse_dockerfile
    from tests.unit.dockerfile.test_convert_golden import FakeResolver

    platform = Platform.parse("linux/amd64")
    result = await convert(
        parse_dockerfile(DOCKERFILE),
        ConvertOptions(build_platform=platform, build_args=PROXIES),
        FakeResolver(),
    )
    captured = capture_provenance(result.definition(), [], platform=platform, steps=True)
    assert any("proxypass99" in json.dumps(step) for step in captured.steps)  # as captured
    attrs = {"filename": "Dockerfile", **{f"build-arg:{k}": v for k, v in PROXIES.items()}}
    predicate = provenance_predicate(
        captured,
        options=ProvenanceOptions(mode="max", builder_id="https://ci.example.com/1"),
        frontend="dockerfile.v0",
        attrs=attrs,
        builder_platform=platform,
        started_ns=0,
        finished_ns=0,
        invocation="x",
    )
    if version == "v1":
        predicate = slsa1_predicate(predicate)
        request = predicate["buildDefinition"]["externalParameters"]["request"]
        source = predicate["runDetails"]["metadata"]["buildkit_metadata"]["source"]
    else:
        request = predicate["invocation"]["parameters"]
        source = predicate["metadata"]["https://mobyproject.org/buildkit@v1#metadata"]["source"]
    text = json.dumps(predicate)
    for secret in SECRETS:
        assert secret not in text, secret
    dockerfile = base64.b64decode(source["infos"][0]["data"]).decode()
    for secret in SECRETS:
        assert secret not in dockerfile, secret
    assert "ADD https://bob:xxxxx@example.com/f.tgz /f" in dockerfile  # the rest as written
    assert request["args"]["build-arg:HTTP_PROXY"] == "http://u:xxxxx@proxy:3128"
