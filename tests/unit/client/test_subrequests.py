"""A build's subrequest (``--call=outline|targets``) on its way: the client's options,
the frontend attributes a daemon gets (BuildKit's ``requestid``) and reads back, the
answer decoded from the daemon's response, and the frontend answering it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import pytest

from dockyard.client import BuildOptions, BuildResult
from dockyard.client._context import PreparedContext
from dockyard.client._job import dockerfile_job
from dockyard.client._wire import decode_exporter_response, dockerfile_attrs
from dockyard.core import FrontendError, Platform, UsageError
from dockyard.frontend import DockerfileFrontend, DockerfileOptions


def test_options_check_the_subrequest() -> None:
    assert BuildOptions(subrequest="outline").builds is False
    assert BuildOptions(check=True).builds is False
    assert BuildOptions().builds is True
    with pytest.raises(UsageError, match="unknown subrequest 'lint'"):
        BuildOptions(subrequest="lint")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="its checks or a subrequest, not both"):
        BuildOptions(subrequest="targets", check=True)


@pytest.mark.parametrize(
    ("options", "request_id"),
    [
        (DockerfileOptions(subrequest="outline", target="app"), "frontend.outline"),
        (DockerfileOptions(subrequest="targets"), "frontend.targets"),
        (DockerfileOptions(check=True), "frontend.lint"),
        (DockerfileOptions(), None),
    ],
)
def test_attrs_carry_the_request(options: DockerfileOptions, request_id: str | None) -> None:
    attrs = dockerfile_attrs(options)
    assert attrs.get("requestid") == request_id
    assert DockerfileOptions.from_attrs(attrs) == options


def test_an_unknown_frontend_request_is_refused() -> None:
    with pytest.raises(UsageError, match=r"unsupported frontend request 'frontend\.dump-llb'"):
        DockerfileOptions.from_attrs({"requestid": "frontend.dump-llb"})
    # a request id that is not the frontend's is not its business
    assert DockerfileOptions.from_attrs({"requestid": "other"}).subrequest is None


def test_the_job_of_a_subrequest_exports_nothing(tmp_path: Path) -> None:
    context = PreparedContext(
        context=tmp_path,
        dockerfile_dir=tmp_path,
        filename="Dockerfile",
        shared_key="k",
        description=".",
    )
    options = BuildOptions(context=str(tmp_path), tags=("app",), subrequest="targets")
    job = dockerfile_job(options, context, secrets=None, ssh=None, credentials=None)
    assert job.exports == ()
    assert isinstance(job.frontend_options, DockerfileOptions)
    assert job.frontend_options.subrequest == "targets"
    built = dockerfile_job(
        BuildOptions(context=str(tmp_path), tags=("app",)),
        context,
        secrets=None,
        ssh=None,
        credentials=None,
    )
    assert built.exports  # the same flags build and store an image


def test_the_answer_stays_a_document_through_the_daemon() -> None:
    document = '{\n  "targets": []\n}'
    decoded = decode_exporter_response(
        {"result.json": document, "result.txt": "TARGET", "containerimage.descriptor": "{}"}
    )
    assert decoded["result.json"] == document  # as the frontend wrote it
    assert decoded["containerimage.descriptor"] == {}  # other JSON values: decoded
    result = BuildResult(metadata=MappingProxyType(decoded), built=False)
    assert result.call_output("json") == document
    assert result.call_output("text") == "TARGET"
    assert result.call_output() == "TARGET"
    assert BuildResult().call_output("json") is None


class _Context:
    """The frontend context a subrequest uses: the client's files and the platform."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reporter = _Reporter()
        self.build_platform = Platform.parse("linux/amd64")
        self.session_id = "s"

    async def read_client_files(self, directory: str, names: Sequence[str]) -> dict[str, bytes]:
        return {n: self.files[n] for n in names if n in self.files and directory == "dockerfile"}


class _Reporter:
    def emit(self, event: object) -> None:
        pass


async def test_the_frontend_answers_in_its_metadata() -> None:
    dockerfile = b"# app the app\nFROM scratch AS app\nARG V=1\n"
    ctx = _Context({"Dockerfile": dockerfile})
    frontend = DockerfileFrontend()
    targets = await frontend.solve(
        ctx,  # type: ignore[arg-type]  # a stand-in
        frontend.parse_options({"requestid": "frontend.targets"}),
    )
    assert targets.definition is None
    assert targets.metadata["version"] == "1.0.0"
    assert json.loads(targets.metadata["result.json"])["targets"][0]["name"] == "app"
    assert targets.metadata["result.txt"] == "TARGET        DESCRIPTION\napp (default) the app\n"
    outline = await frontend.solve(
        ctx,  # type: ignore[arg-type]
        frontend.parse_options({"requestid": "frontend.outline", "build-arg:V": "2"}),
    )
    document = json.loads(outline.metadata["result.json"])
    assert document["args"][0]["value"] == "2"
    assert outline.metadata["result.txt"].startswith("TARGET:      app\nDESCRIPTION: the app\n")
    with pytest.raises(UsageError, match="target stage 'nope' could not be found"):
        await frontend.solve(
            ctx,  # type: ignore[arg-type]
            frontend.parse_options({"requestid": "frontend.outline", "target": "nope"}),
        )


async def test_the_frontend_outline_has_the_substitution_total_of_a_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dockyard.dockerfile import _shell

    monkeypatch.setattr(_shell, "MAX_EXPANDED_TOTAL", 6 << 20)
    lines = ["FROM scratch", "ARG A=aaaaaaaaaaaaaaaa", *(["ARG A=$A$A"] * 16)]
    lines += [f"ARG B{i}=$A." for i in range(40)]
    ctx = _Context({"Dockerfile": ("\n".join(lines) + "\n").encode()})
    frontend = DockerfileFrontend()
    with pytest.raises(FrontendError, match=r"^Dockerfile:2[0-9]: .* characters in all"):
        await frontend.solve(
            ctx,  # type: ignore[arg-type]
            frontend.parse_options({"requestid": "frontend.outline"}),
        )


def test_a_dockerfile_build_sends_its_directories_as_roots(tmp_path: Path) -> None:
    """docker build and buildx send the context as owned by 0:0, so COPY without
    --chown gives root's files (found by differential testing against docker 20.10)."""
    context = PreparedContext(
        context=tmp_path,
        dockerfile_dir=tmp_path,
        filename="Dockerfile",
        shared_key="k",
        description=".",
    )
    job = dockerfile_job(
        BuildOptions(context=str(tmp_path)), context, secrets=None, ssh=None, credentials=None
    )
    assert job.owners is False
    assert job.session().owners is False
