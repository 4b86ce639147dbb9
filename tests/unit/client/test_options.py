"""Build options as values: cache specs, validation, the exports buildx makes from -o,
-t, --push and --load, and what a daemon is sent (frontend attributes, exports turned
into session targets, its string map decoded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.client import BuildOptions, CacheSpec
from dockyard.client._job import LOAD_TARGET, Job, exports_of
from dockyard.client._result import Transfer, Watcher
from dockyard.client._wire import decode_exporter_response, dockerfile_attrs, remote_exports
from dockyard.core import (
    BuildWarning,
    CollectingReporter,
    Event,
    Platform,
    UsageError,
    VertexLog,
    VertexProgress,
)
from dockyard.exporter import (
    ClientTarget,
    DockerExport,
    ImageExport,
    LocalExport,
    LocalPath,
    OciExport,
    Stdout,
    TarExport,
    parse_exporter,
    parse_output,
)
from dockyard.frontend import DockerfileOptions
from dockyard.session import DirectoryTarget, FileTarget


def test_cache_specs() -> None:
    spec = CacheSpec.parse("type=local,src=/cache", export=False)
    assert (spec.type, spec.path, spec.export, dict(spec.attrs)) == (
        "local",
        Path("/cache"),
        False,
        {"src": "/cache"},
    )
    spec = CacheSpec.parse("type=local,dest=out,mode=max", export=True)
    assert (spec.path, dict(spec.attrs)) == (Path("out"), {"dest": "out", "mode": "max"})
    assert spec.text == "type=local,dest=out,mode=max"
    spec = CacheSpec.parse("user/app:cache", export=False)
    assert (spec.type, dict(spec.attrs), spec.path) == ("registry", {"ref": "user/app:cache"}, None)
    # buildx reads a bare --cache-to alike (its help: --cache-to user/app:cache)
    spec = CacheSpec.parse("user/app:cache", export=True)
    assert (spec.type, dict(spec.attrs), spec.export) == (
        "registry",
        {"ref": "user/app:cache"},
        True,
    )
    assert CacheSpec.parse("type=inline", export=True).type == "inline"
    for text, export, message in [
        ("type=local", False, "type=local needs src=DIR"),
        ("type=local,src=x", True, "type=local needs dest=DIR"),
        ("src=x", False, "type= is required"),
        ("a,b", True, "invalid field"),
        ("type=local,src=a,src=b", False, "src given twice"),
        ("", True, "empty value"),
    ]:
        with pytest.raises(UsageError, match=message):
            CacheSpec.parse(text, export=export)


def test_caches_become_the_engines_values() -> None:
    from dockyard.client._embedded import _caches
    from dockyard.engine import LocalCacheExport, LocalCacheImport, RegistryCacheImport

    assert _caches(Job(name="x", frontend="dockerfile.v0")) == {}
    job = Job(
        name="x",
        frontend="dockerfile.v0",
        cache_from=(
            CacheSpec.parse("type=local,src=/c", export=False),
            CacheSpec.parse("registry.local:5000/app:cache", export=False),
        ),
        cache_to=(CacheSpec.parse("type=local,dest=/d,mode=max", export=True),),
    )
    caches = _caches(job)
    first, second = caches["cache_imports"]
    assert isinstance(first, LocalCacheImport)
    assert first.src == Path("/c")
    assert isinstance(second, RegistryCacheImport)
    (export,) = caches["cache_exports"]
    assert isinstance(export, LocalCacheExport)
    assert export.dest == Path("/d")
    bad = Job(
        name="x",
        frontend="dockerfile.v0",
        cache_to=(CacheSpec.parse("type=local,dest=/d,mode=most", export=True),),
    )
    with pytest.raises(UsageError):
        _caches(bad)


def test_build_options_are_checked() -> None:
    with pytest.raises(UsageError, match="invalid network mode"):
        BuildOptions(network="bridge")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown entitlement 'root'"):
        BuildOptions(allow=frozenset({"root"}))
    with pytest.raises(UsageError, match="invalid device 'a/b/c'"):
        BuildOptions(allow=frozenset({"device=a/b/c"}))
    assert BuildOptions(allow=frozenset({"device", "device=v.com/c=x,alias=mine"})).allow
    with pytest.raises(UsageError, match="cannot both be read from stdin"):
        BuildOptions(context="-", dockerfile="-")
    with pytest.raises(UsageError, match="invalid build context name 'context'"):
        BuildOptions(build_contexts={"context": "x"})
    options = BuildOptions(network="host", allow=frozenset({"security.insecure"}))
    assert options.entitlements == {"network.host", "security.insecure"}
    assert BuildOptions().entitlements == frozenset()


def _names(export: object) -> list[str]:
    image = getattr(export, "image")  # noqa: B009
    return [str(n) for n in image.names]


def test_a_tag_alone_stores_the_image() -> None:
    (export,) = exports_of(BuildOptions(tags=("app", "app:2")), load=False)
    assert isinstance(export, ImageExport)
    assert not export.push
    assert _names(export) == ["docker.io/library/app:latest", "docker.io/library/app:2"]
    assert exports_of(BuildOptions(), load=False) == ()


def test_tags_name_image_outputs_without_names() -> None:
    outputs = (
        parse_output("type=oci,dest=a.tar"),
        parse_output("type=docker,dest=b.tar,name=other"),
        parse_output("type=local,dest=dir"),
    )
    exports = exports_of(BuildOptions(tags=("app",), outputs=outputs), load=False)
    assert _names(exports[0]) == ["docker.io/library/app:latest"]
    assert _names(exports[1]) == ["docker.io/library/other:latest"]
    assert exports[2] == outputs[2]  # and no image store: -o was given


def test_push_and_load() -> None:
    (pushed,) = exports_of(BuildOptions(tags=("registry.local:5000/app",), push=True), load=False)
    assert isinstance(pushed, ImageExport)
    assert pushed.push
    (pushed,) = exports_of(
        BuildOptions(tags=("app",), push=True, outputs=(parse_output("type=image"),)), load=False
    )
    assert isinstance(pushed, ImageExport)
    assert pushed.push
    with pytest.raises(UsageError, match="tag is needed when pushing"):
        exports_of(BuildOptions(push=True), load=False)
    (loaded,) = exports_of(BuildOptions(tags=("app",)), load=True)
    assert isinstance(loaded, DockerExport)
    assert loaded.dest == ClientTarget(name=LOAD_TARGET)
    assert _names(loaded) == ["docker.io/library/app:latest"]
    with pytest.raises(UsageError, match="invalid tag 'Bad Tag'"):
        exports_of(BuildOptions(tags=("Bad Tag",)), load=False)


def test_annotations_go_to_every_image_output() -> None:
    from dockyard.exporter import parse_annotation

    flags = (*parse_annotation("k=flag"), *parse_annotation("index:i=1"))
    outputs = (
        parse_output("type=oci,dest=a.tar,annotation.own=1"),
        parse_output("type=local,dest=dir"),
        parse_output("type=image,name=app"),
    )
    oci, local, image = exports_of(BuildOptions(outputs=outputs, annotations=flags), load=False)
    assert isinstance(oci, OciExport)
    assert isinstance(image, ImageExport)
    assert [a.key for a in oci.image.annotations] == ["own", "k", "i"]  # its own first
    assert image.image.annotations == flags
    assert local == outputs[1]  # no manifests: nothing to annotate
    (stored,) = exports_of(BuildOptions(tags=("app",), annotations=flags), load=False)
    assert isinstance(stored, ImageExport)
    assert stored.image.annotations == flags
    assert stored.to_attrs()["annotation.k"] == "flag"  # what a daemon is sent
    assert stored.to_attrs()["annotation-index.i"] == "1"
    (pushed, loaded) = exports_of(
        BuildOptions(tags=("r.test/app",), push=True, annotations=flags[:1]), load=True
    )
    assert isinstance(pushed, ImageExport)
    assert isinstance(loaded, DockerExport)
    assert pushed.image.annotations == loaded.image.annotations == flags[:1]


def test_dockerfile_options_travel_as_buildkit_attrs() -> None:
    from dockyard import llb
    from dockyard.dockerfile import NetworkMode

    full = DockerfileOptions(
        filename="build/Dockerfile.prod",
        dockerfile_dir="df",
        context_dir="ctx",
        target="final",
        build_args={"A": "1", "B": ""},
        labels={"org.example": "yes"},
        platform=Platform.parse("linux/amd64"),
        named_contexts={"base": "docker-image://busybox", "src": "local:named:src"},
        no_cache_stages=frozenset({"a", "b"}),
        pull=True,
        network=NetworkMode.NONE,
        hostname="box",
        extra_hosts=(llb.HostIP(host="db", ip="10.0.0.2"),),
    )
    attrs = dockerfile_attrs(full)
    assert attrs["build-arg:A"] == "1"
    assert attrs["no-cache"] == "a,b"
    assert attrs["context:src"] == "local:named:src"
    assert DockerfileOptions.from_attrs(attrs) == full
    for options in (
        DockerfileOptions(),
        DockerfileOptions(no_cache=True),
        DockerfileOptions(check=True),
    ):
        assert DockerfileOptions.from_attrs(dockerfile_attrs(options)) == options


def test_exports_to_this_host_become_session_targets(tmp_path: Path) -> None:
    exports = (
        parse_output(f"type=local,dest={tmp_path}/dir"),
        parse_output("type=tar,dest=-"),
        parse_output("type=oci,dest=rel/out.tar"),
        parse_output("type=image,name=app"),
        DockerExport(dest=ClientTarget(name="docker-load")),
    )
    sent, targets = remote_exports(exports)
    assert [type(e) for e in sent] == [type(e) for e in exports]
    assert isinstance(sent[0], LocalExport)
    assert sent[0].dest == ClientTarget(name="output-0")
    assert targets["output-0"] == DirectoryTarget(path=tmp_path / "dir")
    assert targets["output-1"] == FileTarget(fd=1)
    assert targets["output-2"] == FileTarget(path=Path("rel/out.tar").absolute())
    assert sent[3] == exports[3]
    assert sent[4] == exports[4]
    assert set(targets) == {"output-0", "output-1", "output-2"}
    # what the daemon parses back
    for export in sent:
        assert parse_exporter(export.type_name, export.to_attrs()) == export
    with pytest.raises(UsageError, match="tar=false"):
        remote_exports((OciExport(dest=LocalPath(path=tmp_path), tar=False),))
    assert isinstance(parse_output("-"), TarExport)
    assert parse_output("-").dest == Stdout()  # type: ignore[union-attr]


def test_exporter_response_json_values_are_decoded() -> None:
    descriptor = {"digest": "sha256:ab", "size": 3}
    wire = {
        "containerimage.digest": "sha256:ab",
        "containerimage.descriptor": json.dumps(descriptor),
        "odd": "{not json",
    }
    assert decode_exporter_response(wire) == {
        "containerimage.digest": "sha256:ab",
        "containerimage.descriptor": descriptor,
        "odd": "{not json",
    }


def test_watcher_keeps_final_transfer_counts_and_warnings() -> None:
    inner = CollectingReporter()
    watcher = Watcher(inner)

    def progress(digest: str, id: str, current: int) -> VertexProgress:
        return VertexProgress(digest=digest, id=id, name=id, current=current, timestamp=1.0)

    events: list[Event] = [
        progress("a", "transfer:context", 10),
        progress("a", "transfer:context:files", 1),
        progress("a", "transfer:context", 300),
        progress("a", "transfer:context:files", 3),
        progress("b", "transfer:context", 5),
        progress("b", "transfer:context:files", 1),
        progress("c", "transfer:dockerfile", 40),
        progress("c", "extract", 99),
        VertexLog(digest="c", stream=1, data=b"x", timestamp=1.0),
        BuildWarning(short="careful"),
    ]
    for event in events:
        watcher.emit(event)
    assert inner.events == events
    assert watcher.transfers() == {
        "context": Transfer(files=4, bytes=305),
        "dockerfile": Transfer(files=0, bytes=40),
    }
    assert watcher.warnings == [BuildWarning(short="careful")]


def test_a_job_is_a_definition_or_a_frontend() -> None:
    with pytest.raises(UsageError):
        Job(name="x")
    job = Job(name="x", frontend="dockerfile.v0", directories={"context": Path("/c")})
    session = job.session({"output-0": FileTarget(fd=1)})
    assert session.directories == {"context": Path("/c")}
    assert set(session.exports) == {"output-0"}


def test_platforms_travel_as_buildkits_comma_list() -> None:
    from dockyard.core import Platform

    amd64, arm64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
    options = DockerfileOptions(platforms=(amd64, arm64))
    attrs = dockerfile_attrs(options)
    assert attrs["platform"] == "linux/amd64,linux/arm64"
    assert DockerfileOptions.from_attrs(attrs) == options
    assert dockerfile_attrs(DockerfileOptions(platform=arm64))["platform"] == "linux/arm64"


def test_build_options_platforms() -> None:
    from dockyard.core import Platform
    from dockyard.exporter import parse_output

    amd64, arm64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
    assert BuildOptions(platforms=(arm64,)).platform == arm64
    assert BuildOptions(platforms=(amd64, arm64, amd64)).platforms == (amd64, arm64)
    with pytest.raises(UsageError, match="not both"):
        BuildOptions(platform=amd64, platforms=(amd64, arm64))
    with pytest.raises(UsageError, match="docker exporter"):
        BuildOptions(platforms=(amd64, arm64), load=True)
    with pytest.raises(UsageError, match="docker exporter"):
        BuildOptions(platforms=(amd64, arm64), outputs=(parse_output("type=docker,dest=x"),))
