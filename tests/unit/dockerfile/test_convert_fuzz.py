"""Token soup through the whole frontend: parse, lint, convert to LLB and marshal. Bad
input fails with a Dockyard error naming a Dockerfile line (or, for a base image that
does not exist, the fake resolver's not-found), never with another exception."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.core import DockyardError, Platform
from dockyard.dockerfile import ConvertOptions, convert, lint, parse_dockerfile

from .test_convert_golden import FakeResolver

AMD64 = Platform.parse("linux/amd64")
EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "150"))

INSTRUCTIONS = [
    "FROM busybox",
    "FROM alpine:3.19 AS a",
    "FROM --platform=$BUILDPLATFORM busybox AS b",
    "FROM a",
    "FROM b AS c",
    "FROM scratch",
    "FROM ${IMG:-busybox}",
    "ARG IMG",
    "ARG A=1",
    "ARG TARGETPLATFORM",
    "ENV A=${A:-x} B=$A",
    "ENV C=${A#?}${A%%1}${A/1/2}",
    "RUN echo $A",
    'RUN ["sh", "-c", "x"]',
    "RUN --mount=type=cache,target=/c,id=$A x",
    "RUN --mount=type=tmpfs,target=/t,size=99999999999999999999999 x",
    "RUN --mount=type=bind,from=a,source=/x,target=/y x",
    "RUN --mount=type=secret,id=s,required=true x",
    "RUN --network=none --security=sandbox x",
    "RUN <<EOF\necho hi\nEOF",
    "COPY --from=a /x /y",
    "COPY --from=c /x /y",
    "COPY --from=0 /x /y",
    "COPY --from=99 /x /y",
    "COPY --chmod=755 --chown=1:1 a b",
    "COPY --link --parents a/ /b/",
    "COPY <<EOF /f\nbody\nEOF",
    "ADD --checksum=sha256:" + "a" * 64 + " https://example.com/x /x",
    "ADD https://example.com/x.git#main /src",
    "ADD --keep-git-dir=true git@github.com:a/b.git /src",
    "WORKDIR /w/$A",
    "WORKDIR relative",
    "USER 1000:1000",
    "USER $A",
    "EXPOSE 80 1-3/udp $A",
    "LABEL a=b c=$A",
    "VOLUME /v $A",
    "STOPSIGNAL SIGKILL",
    "STOPSIGNAL 99999",
    "HEALTHCHECK --interval=1s --retries=3 CMD true",
    "HEALTHCHECK NONE",
    'SHELL ["/bin/bash", "-c"]',
    'CMD ["a"]',
    "ENTRYPOINT x",
    "ONBUILD RUN x",
    "MAINTAINER me",
]
JUNK = ["", "\\", "$", "${", "}", "'", '"', "\t", "\0", "\r", "# x", "--from=", "--", "=", "=="]

line = st.one_of(
    st.sampled_from(INSTRUCTIONS),
    st.tuples(st.sampled_from(INSTRUCTIONS), st.sampled_from(JUNK), st.integers(0, 60)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    ),
)
# most start with a stage (the parser's own property test covers the rest)
dockerfiles = st.tuples(
    st.sampled_from(["FROM busybox AS z\n", "ARG A=2\nFROM busybox\n", ""]),
    st.lists(line, min_size=1, max_size=10).map("\n".join),
).map("".join)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfiles, st.sampled_from([None, "a", "c", "nope"]))
def test_conversion_fails_only_with_located_dockyard_errors(text: str, target: str | None) -> None:
    try:
        dockerfile = parse_dockerfile(text)
        lint(dockerfile)
        options = ConvertOptions(build_platform=AMD64, target=target, build_args={"A": "1"})
        result = asyncio.run(convert(dockerfile, options, FakeResolver()))
        result.definition().to_bytes()
    except DockyardError as exc:
        if exc.locations or "not found" in str(exc) or "target stage" in str(exc):
            return
        raise AssertionError(f"error without a Dockerfile line: {exc!r}") from exc
